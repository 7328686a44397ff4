"""Errors raised by handlers and processing."""

import uuid


class WorkerError(Exception):
    """Base class for errors raised by the workers package."""


class PermanentError(WorkerError):
    """The message is malformed for its type; retrying cannot help, so it is dead-lettered at once."""


class LeaseLost(WorkerError):
    """Another claim took these deliveries (our lease expired); our transaction must roll back.

    Attributes:
        delivery_ids: The deliveries whose claims were lost.
    """

    def __init__(self, delivery_ids: frozenset[uuid.UUID]) -> None:
        super().__init__(", ".join(sorted(map(str, delivery_ids))))
        self.delivery_ids = delivery_ids


class ToolError(WorkerError):
    """A tool could not do what was asked; the message is read to the caller (one line).

    Attributes:
        code: A stable machine code (``INVALID_PHONE``, ``SLOT_UNAVAILABLE``, ...)
            for metrics and logs.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
