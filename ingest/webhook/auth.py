"""Authenticate Vapi's requests over the raw body bytes, in constant time.

Schemes follow Vapi's custom credentials (FINDINGS.md §3, Vapi docs
"Server authentication"): a bearer token (``Authorization: Bearer <token>``
or any header without the prefix), the legacy ``X-Vapi-Secret`` header, and
HMAC with a configurable algorithm, headers, payload format, encoding and
prefix. Vapi sends ``x-vapi-secret: ""`` when no secret is set, so an empty
value never authenticates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

from ingest.errors import IngestError
from ingest.settings import Settings


class Unauthorized(IngestError):
    """The request carries no valid credential; the message is safe to return."""


def verify(settings: Settings, headers: Mapping[str, str], body: bytes, *, now_s: float | None = None) -> None:
    """Check a request against the configured scheme.

    Args:
        headers: Request headers (case-insensitive mapping, as aiohttp gives).
        body: The raw request body, exactly as received.
        now_s: The current Unix time in seconds (for tests); ``time.time()`` if omitted.

    Raises:
        Unauthorized: with a short reason that never contains a secret.
    """
    scheme = settings.auth_scheme
    if scheme == "none":
        return
    if scheme == "hmac":
        _verify_hmac(settings, headers, body, time.time() if now_s is None else now_s)
        return
    if scheme == "bearer":
        header = settings.bearer_header
        value = headers.get(header, "")
        if header.lower() == "authorization":
            prefix, _, value = value.partition(" ")
            if prefix.lower() != "bearer":
                raise Unauthorized(f"missing or malformed {header} header")
    else:
        header = "x-vapi-secret"
        value = headers.get(header, "")
    if not _matches_any(_raw(value.strip()), settings.webhook_secrets):
        raise Unauthorized(f"missing or wrong {header}")


def sign(settings: Settings, body: bytes, *, timestamp_ms: int | None = None) -> dict[str, str]:
    """Return the headers Vapi would send for ``body`` under the configured scheme.

    Signs with the first secret in ``VAPI_WEBHOOK_SECRETS``. Used by
    ``vapi-ingest send`` and the tests.

    Args:
        timestamp_ms: The HMAC timestamp in epoch milliseconds; now if omitted.
    """
    scheme = settings.auth_scheme
    if scheme == "none" or not settings.webhook_secrets:
        return {}
    secret = settings.webhook_secrets[0]
    if scheme == "bearer":
        if settings.bearer_header.lower() == "authorization":
            return {settings.bearer_header: "Bearer " + secret.decode()}
        return {settings.bearer_header: secret.decode()}
    if scheme == "x-vapi-secret":
        return {"x-vapi-secret": secret.decode()}
    ts = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
    digest = _hmac_digest(settings, secret, _signed_payload(settings, ts, body))
    return {
        settings.hmac_signature_header: settings.hmac_signature_prefix + _encode(settings, digest),
        settings.hmac_timestamp_header: ts,
    }


def _verify_hmac(settings: Settings, headers: Mapping[str, str], body: bytes, now_s: float) -> None:
    signature = headers.get(settings.hmac_signature_header, "").strip()
    timestamp = headers.get(settings.hmac_timestamp_header, "").strip()
    if not signature:
        raise Unauthorized(f"missing {settings.hmac_signature_header} header")
    needs_ts = "{timestamp}" in settings.hmac_payload_format
    if needs_ts:
        if not timestamp:
            raise Unauthorized(f"missing {settings.hmac_timestamp_header} header")
        ts_s = _timestamp_seconds(timestamp)
        if ts_s is None:
            raise Unauthorized(f"malformed {settings.hmac_timestamp_header} header")
        if abs(now_s - ts_s) > settings.hmac_tolerance_s:
            raise Unauthorized(f"{settings.hmac_timestamp_header} outside the tolerance")
    prefix = settings.hmac_signature_prefix
    if prefix and not signature.startswith(prefix):
        raise Unauthorized("signature prefix mismatch")
    presented = _raw(signature[len(prefix) :])
    payload = _signed_payload(settings, timestamp, body)
    expected = [_encode(settings, _hmac_digest(settings, s, payload)).encode() for s in settings.webhook_secrets]
    if not _matches_any(presented, tuple(expected)):
        raise Unauthorized("signature mismatch")


def _raw(header_value: str) -> bytes:
    """A header value's bytes as sent: aiohttp decodes them as UTF-8 with ``surrogateescape``, so any
    bytes (not valid UTF-8 included) come back unchanged and simply fail to match."""
    return header_value.encode("utf-8", "surrogateescape")


def _timestamp_seconds(raw: str) -> float | None:
    """Vapi does not state the unit of ``x-timestamp`` (FINDINGS §3): accept s and ms."""
    try:
        value = float(raw)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    # Seconds since 1970 stay below 1e11 until the year 5138; milliseconds are above it.
    return value / 1000.0 if value > 1e11 else value


def _signed_payload(settings: Settings, timestamp: str, body: bytes) -> bytes:
    head, _, tail = settings.hmac_payload_format.partition("{body}")
    return head.replace("{timestamp}", timestamp).encode() + body + tail.replace("{timestamp}", timestamp).encode()


def _hmac_digest(settings: Settings, secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, getattr(hashlib, settings.hmac_algorithm)).digest()


def _encode(settings: Settings, digest: bytes) -> str:
    return digest.hex() if settings.hmac_encoding == "hex" else base64.b64encode(digest).decode()


def _matches_any(presented: bytes, candidates: tuple[bytes, ...]) -> bool:
    """Compare against every candidate, so timing says nothing about which one matched."""
    if not presented:
        return False
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(presented, candidate)
    return ok
