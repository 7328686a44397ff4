"""Parse a request body into an :class:`~workers.messages.Envelope` PostgreSQL can store, and Vapi timestamps.

What the body may hold and what becomes of it is the README's answer table:
invalid text is replaced (and recorded), numbers beyond double range keep
their text, credentials are redacted, and ids used in idempotency keys are
bounded.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from db.jsonb import lossless_decoder
from workers import sanitize
from workers.messages import TOOL_TYPES, Envelope, InvalidEnvelope

#: Longest id accepted where an id becomes part of an idempotency key (README, answer table).
MAX_ID_CHARS = 256


def parse(body: bytes) -> Envelope:
    """Parse a request body into an :class:`Envelope`, made storable (:mod:`workers.sanitize`).

    Invalid UTF-8 bytes, NUL characters and unpaired surrogates become
    U+FFFD (recorded in :attr:`Envelope.normalised`); numbers beyond double
    range keep their text (:func:`db.jsonb.lossless_decoder`); credential values are
    redacted.

    Raises:
        InvalidEnvelope: if the body is not JSON (NaN and Infinity are not), is
            nested too deeply to parse, is not an object, has no ``message``
            object, no string ``message.type`` (a missing type is accepted only
            with a ``toolCallList``, as the OAS allows), or an id used in an
            idempotency key longer than :data:`MAX_ID_CHARS` characters.
    """
    normalised: set[str] = set()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", "replace")
        normalised.add("invalid_utf8")
    try:
        data = _DECODER.decode(text.removeprefix("\ufeff"))
    except RecursionError:
        raise InvalidEnvelope("body is nested too deeply") from None
    except ValueError:
        raise InvalidEnvelope("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidEnvelope("body is not a JSON object")
    message = data.get("message")
    if not isinstance(message, dict):
        raise InvalidEnvelope("body has no 'message' object")
    found = sanitize.scan(text)
    if found.unstorable_text or found.credentials:
        normalised |= sanitize.scrub(message, fix_text=found.unstorable_text, redact=found.credentials)
    mtype = message.get("type")
    if mtype is None and isinstance(message.get("toolCallList"), list):
        mtype = "tool-calls"
    if not isinstance(mtype, str) or not mtype.strip():
        raise InvalidEnvelope("message.type is missing or not a string")
    if len(mtype) > 200:
        raise InvalidEnvelope("message.type is longer than 200 characters")
    envelope = Envelope(
        message=message,
        type=mtype,
        timestamp=parse_timestamp(message.get("timestamp")),
        body_sha256=hashlib.sha256(body).hexdigest(),
        normalised=tuple(sorted(normalised)),
    )
    _check_key_parts(envelope)
    return envelope


def stored(message: Any, event_type: str) -> Envelope:
    """The :class:`Envelope` of a message read back from its row (a delivery's or quarantine's ``payload``):
    what handlers, routing and the console read it through. A payload that is not an object reads as
    ``{}``; the envelope has no body hash, since its key is already the row's ``event_id``."""
    payload = message if isinstance(message, dict) else {}
    return Envelope(payload, event_type, parse_timestamp(payload.get("timestamp")), body_sha256=None)


def _check_key_parts(envelope: Envelope) -> None:
    """Ids that become idempotency keys are bounded, so a key always fits a btree index entry."""
    message, call = envelope.message, envelope.call
    for name, value in (
        ("message.call.id", call.get("id")),
        ("message.call.assistantId", call.get("assistantId")),
        ("message.call.phoneNumberId", call.get("phoneNumberId")),
        ("message.status", message.get("status")),
        ("message.campaignId", message.get("campaignId")),
    ):
        if type(value) is str and len(value) > MAX_ID_CHARS:
            raise InvalidEnvelope(f"{name} is longer than {MAX_ID_CHARS} characters")
    for key in ("assistant", "phoneNumber", "chat", "session"):
        obj = message.get(key)
        if type(obj) is dict and type(obj.get("id")) is str and len(obj["id"]) > MAX_ID_CHARS:
            raise InvalidEnvelope(f"message.{key}.id is longer than {MAX_ID_CHARS} characters")
    if envelope.type in TOOL_TYPES:
        for invocation in envelope.tool_invocations():
            for name, value in (("tool call id", invocation.tool_call_id), ("tool name", invocation.name)):
                if value is not None and len(value) > MAX_ID_CHARS:
                    raise InvalidEnvelope(f"{name} is longer than {MAX_ID_CHARS} characters")


def parse_timestamp(value: Any) -> datetime | None:
    """Normalise a Vapi timestamp: ISO-8601 string or epoch milliseconds (FINDINGS.md §1).

    Returns:
        An aware UTC datetime, or ``None`` for anything else (including
        numbers outside years 1970-9999, strings of any length that are not
        such a time, and times that leave the calendar when moved to UTC).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not 0 <= value < 253402300800000:
            return None
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, str) and 0 < len(value) <= 64:
        text = value.strip()
        try:
            if text.isascii() and text.isdigit():
                return parse_timestamp(int(text))
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            return None
    return None


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python would accept them and PostgreSQL would not."""
    raise ValueError(f"{name} is not valid JSON")


_DECODER = lossless_decoder(parse_constant=_reject_constant)
