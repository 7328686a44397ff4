"""Ids a person can type: a full UUID, or a unique prefix of at least 8 hex digits (as git does).

A prefix becomes a UUID range, so resolving it is one primary-key index
range scan, whatever the table's size.
"""

from __future__ import annotations

import string
import uuid

from db.errors import DatabaseError
from db.types import Executor

#: The shortest prefix accepted: 8 hex digits name one of 4 billion.
MIN_PREFIX = 8
#: Tables whose ``id`` may be given by prefix, with the noun used in messages.
TABLES = {
    "webhook_delivery_log": "delivery",
    "organizations": "organization",
    "api_tokens": "token",
    "agents": "assistant mapping",
    "phone_numbers": "phone number mapping",
}


class IdNotFound(DatabaseError):
    """No row has this id or id prefix; the message names both."""


class AmbiguousId(DatabaseError):
    """More than one row starts with this prefix; the message says to type more."""


class InvalidId(DatabaseError):
    """Not a UUID, nor a prefix of 8 or more hex digits."""


def prefix_range(text: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The UUIDs that start with ``text`` (dashes ignored), lowest and highest.

    Raises:
        InvalidId: fewer than 8 hex digits, more than 32, or a non-hex character.
    """
    digits = text.strip().lower().replace("-", "")
    if not (MIN_PREFIX <= len(digits) <= 32) or not set(digits) <= set(string.hexdigits.lower()):
        raise InvalidId(f"{text!r} is neither a UUID nor a prefix of {MIN_PREFIX} or more hex digits")
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


async def resolve(conn: Executor, table: str, text: str) -> uuid.UUID:
    """The one id in ``table`` that ``text`` names (a full UUID or a unique prefix).

    Raises:
        InvalidId, IdNotFound, AmbiguousId: each with a message naming ``text``.
    """
    noun = TABLES[table]  # KeyError for a table not listed: a programming error
    low, high = prefix_range(text)
    rows = await conn.fetch(f"SELECT id FROM {table} WHERE id BETWEEN $1 AND $2 ORDER BY id LIMIT 2", low, high)
    if not rows:
        raise IdNotFound(f"no {noun} {text}")
    if len(rows) > 1:
        raise AmbiguousId(f"{text} names more than one {noun}: type more of the id")
    found: uuid.UUID = rows[0]["id"]
    return found
