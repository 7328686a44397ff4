"""Errors raised by handlers and processing."""


class WorkerError(Exception):
    """Base class for errors raised by the workers package."""


class PermanentError(WorkerError):
    """The message is malformed for its type; retrying cannot help, so it is dead-lettered at once."""


class LeaseLost(WorkerError):
    """Another claim took the delivery (our lease expired); our transaction must roll back."""
