"""Errors raised by the db package."""


class DatabaseError(Exception):
    """Base class for errors raised by the db package."""


class MigrationError(DatabaseError):
    """A migration file is misnamed or failed to apply; the message names it."""
