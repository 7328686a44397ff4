"""Authentication schemes over raw body bytes: HMAC, bearer, x-vapi-secret, rotation, empty header."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from ingest.settings import Settings
from ingest.webhook import auth

BODY = b'{"message": {"type": "status-update", "status": "ringing"}}'
NOW_S = 1_763_784_256.0


def hmac_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"auth_scheme": "hmac", "webhook_secrets": (b"new-secret", b"old-secret")}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def hmac_headers(secret: bytes, ts: str, body: bytes = BODY, *, prefix: str = "", b64: bool = False) -> dict[str, str]:
    digest = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).digest()
    sig = base64.b64encode(digest).decode() if b64 else digest.hex()
    return {"x-signature": prefix + sig, "x-timestamp": ts}


def test_hmac_accepts_any_configured_secret_so_secrets_rotate():
    """Both the new and the old secret verify while both are configured."""
    settings = hmac_settings()
    ts = str(int(NOW_S * 1000))

    auth.verify(settings, hmac_headers(b"new-secret", ts), BODY, now_s=NOW_S)
    auth.verify(settings, hmac_headers(b"old-secret", ts), BODY, now_s=NOW_S)


def test_hmac_rejects_a_rotated_out_secret():
    """Once the old secret is removed from VAPI_WEBHOOK_SECRETS it no longer verifies."""
    settings = hmac_settings(webhook_secrets=(b"new-secret",))

    with pytest.raises(auth.Unauthorized, match="signature mismatch"):
        auth.verify(settings, hmac_headers(b"old-secret", str(int(NOW_S))), BODY, now_s=NOW_S)


@pytest.mark.parametrize("ts", [str(int(NOW_S)), str(int(NOW_S * 1000))])
def test_hmac_timestamp_in_seconds_or_milliseconds(ts):
    """Vapi does not state the unit of x-timestamp: both seconds and milliseconds are accepted."""
    auth.verify(hmac_settings(), hmac_headers(b"new-secret", ts), BODY, now_s=NOW_S)


def test_hmac_stale_timestamp_is_rejected():
    """A correctly signed request older than VAPI_HMAC_TOLERANCE_S is refused (replay protection)."""
    stale = str(int(NOW_S) - 301)

    with pytest.raises(auth.Unauthorized, match="outside the tolerance"):
        auth.verify(hmac_settings(), hmac_headers(b"new-secret", stale), BODY, now_s=NOW_S)


def test_hmac_signature_over_a_different_body_is_rejected():
    """The signature covers the exact bytes: one changed byte fails."""
    headers = hmac_headers(b"new-secret", str(int(NOW_S)), BODY.replace(b"ringing", b"ended"))

    with pytest.raises(auth.Unauthorized):
        auth.verify(hmac_settings(), headers, BODY, now_s=NOW_S)


def test_hmac_prefix_and_base64_encoding_are_configurable():
    """A 'sha256=' prefix with base64 encoding verifies when configured, and fails when not."""
    configured = hmac_settings(hmac_signature_prefix="sha256=", hmac_encoding="base64")
    headers = hmac_headers(b"new-secret", str(int(NOW_S)), prefix="sha256=", b64=True)

    auth.verify(configured, headers, BODY, now_s=NOW_S)
    with pytest.raises(auth.Unauthorized):
        auth.verify(hmac_settings(), headers, BODY, now_s=NOW_S)
    with pytest.raises(auth.Unauthorized, match="prefix"):
        auth.verify(configured, hmac_headers(b"new-secret", str(int(NOW_S)), b64=True), BODY, now_s=NOW_S)


def test_hmac_sha512_and_custom_headers_round_trip_with_sign():
    """sign() produces what verify() accepts for other algorithms and header names (the sender relies on it)."""
    settings = hmac_settings(
        hmac_algorithm="sha512", hmac_signature_header="x-vapi-signature", hmac_timestamp_header="x-vapi-timestamp"
    )

    headers = auth.sign(settings, BODY)

    assert {"x-vapi-signature", "x-vapi-timestamp"} == set(headers)
    auth.verify(settings, headers, BODY)


@pytest.mark.parametrize("headers", [{}, {"x-signature": ""}, {"x-signature": "00", "x-timestamp": "soon"}])
def test_hmac_missing_or_malformed_headers_are_rejected(headers):
    """No signature, an empty one, or a non-numeric timestamp never authenticates."""
    with pytest.raises(auth.Unauthorized):
        auth.verify(hmac_settings(), headers, BODY, now_s=NOW_S)


def test_bearer_token_in_authorization_header():
    """Vapi's recommended bearer credential: 'Authorization: Bearer <token>'."""
    settings = Settings(auth_scheme="bearer", webhook_secrets=(b"tok-1",))

    auth.verify(settings, {"Authorization": "Bearer tok-1"}, BODY)
    for bad in ({"Authorization": "Bearer tok-2"}, {"Authorization": "tok-1"}, {"Authorization": "Bearer "}, {}):
        with pytest.raises(auth.Unauthorized):
            auth.verify(settings, bad, BODY)


def test_bearer_in_a_custom_header_without_prefix():
    """bearerPrefixEnabled=false with another header name carries the bare token."""
    settings = Settings(auth_scheme="bearer", webhook_secrets=(b"tok-1",), bearer_header="X-Api-Key")

    auth.verify(settings, {"X-Api-Key": "tok-1"}, BODY)
    with pytest.raises(auth.Unauthorized):
        auth.verify(settings, {"X-Api-Key": "Bearer tok-1"}, BODY)


def test_x_vapi_secret_rotation_and_empty_header():
    """x-vapi-secret: any configured secret verifies; the empty value Vapi sends by default never does."""
    settings = Settings(auth_scheme="x-vapi-secret", webhook_secrets=(b"s-new", b"s-old"))

    auth.verify(settings, {"x-vapi-secret": "s-new"}, BODY)
    auth.verify(settings, {"x-vapi-secret": "s-old"}, BODY)
    for bad in ({"x-vapi-secret": ""}, {"x-vapi-secret": "s-other"}, {}):
        with pytest.raises(auth.Unauthorized):
            auth.verify(settings, bad, BODY)


def test_unauthorized_reason_never_contains_the_secret():
    """The 401 reason is safe to return: it names headers, never values."""
    settings = Settings(auth_scheme="x-vapi-secret", webhook_secrets=(b"s-new",))

    with pytest.raises(auth.Unauthorized) as err:
        auth.verify(settings, {"x-vapi-secret": "s-ne"}, BODY)

    assert "s-new" not in str(err.value)
