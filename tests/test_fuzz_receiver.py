"""Bad input against the real web process's receiver: hypothesis fuzzing of bodies, fields and headers.

Properties: never a 5xx, never a stored row without a valid credential, never
an unhandled exception in the log, no secret in the log (the ``web_process`` fixture checks the last three).
"""

from __future__ import annotations

import http.client
import json

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import FUZZ, hostile_messages, message_fields, post_raw
from tests.helpers import SIGNER, signed_headers
from tests.procs import sql


def test_unsigned_random_bytes_are_never_stored_and_never_5xx(web_process):
    """Random bytes with random or no credentials: always 4xx, and nothing is stored."""
    env, _ = web_process

    @FUZZ
    @given(
        body=st.binary(max_size=2000),
        headers=st.dictionaries(
            st.sampled_from(["x-signature", "x-timestamp", "x-vapi-secret", "Authorization", "Content-Type"]),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
        ),
    )
    def check(body: bytes, headers: dict[str, str]) -> None:
        status = post_raw(env, body, headers)
        assert 400 <= status < 500, status

    check()
    assert 0 == sql(env, "SELECT count(*) FROM webhook_delivery_log")
    assert 0 == sql(env, "SELECT count(*) FROM webhook_quarantine")


def test_signed_random_messages_never_5xx(web_process):
    """Validly signed bodies with every field of a message replaced by anything: never a 5xx."""
    env, _ = web_process

    @FUZZ
    @given(message=message_fields, wrap=st.booleans())
    def check(message: dict, wrap: bool) -> None:
        body = json.dumps({"message": message} if wrap else message).encode()
        headers = signed_headers(SIGNER, body)
        status = post_raw(env, body, headers)
        assert status < 500, status

    check()


def test_signed_deeply_nested_and_huge_numbers_never_5xx(web_process):
    """Nesting beyond Python's recursion limit and numbers with thousands of digits are 400 or 2xx, never 5xx."""
    env, _ = web_process
    bodies = [
        b'{"message": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"message": {"type": "hang", "timestamp": ' + b"9" * 5000 + b', "call": {"id": "c"}}}',
        json.dumps(
            {"message": {"type": "status-update", "status": "\u202e\u0000\ud7ff", "call": {"id": "\u00e9" * 500}}}
        ).encode(),
    ]
    for body in bodies:
        headers = signed_headers(SIGNER, body)
        assert post_raw(env, body, headers) < 500


def _hostile_body(message: dict) -> bytes:
    """JSON text of ``message``; ``cost`` becomes a bare number, ``nested`` that many levels of arrays."""
    message = dict(message)
    cost, depth = message.pop("cost", None), message.pop("nested", None)
    text = json.dumps({"message": message})[:-2]
    if cost is not None:
        text += f', "cost": {cost}'
    if depth is not None:
        text += ', "deep": ' + "[" * depth + "]" * depth
    return (text + "}}").encode()


def test_signed_hostile_envelopes_never_5xx(web_process):
    """Every envelope field in hostile forms (surrogates, ids at and past the bound, timestamps at the calendar's
    edges and of any length, numbers beyond double range, deep nesting, 40 tool calls): 2xx or 4xx, never 5xx."""
    env, _ = web_process

    @FUZZ
    @given(message=hostile_messages)
    def check(message: dict) -> None:
        body = _hostile_body(message)
        headers = signed_headers(SIGNER, body)
        status = post_raw(env, body, headers)
        assert status < 500, (status, body[:300])

    check()


def test_credential_headers_of_any_bytes_never_5xx(web_process):
    """Credential headers carrying any bytes (not UTF-8 included), on a signed body: 401, never 5xx, nothing stored."""
    env, _ = web_process
    body = json.dumps({"message": {"type": "hang", "timestamp": 1, "call": {"id": "c-hdr"}}}).encode()

    @FUZZ
    @given(
        values=st.dictionaries(
            st.sampled_from(["x-signature", "x-timestamp", "x-vapi-secret", "authorization"]),
            st.binary(min_size=1, max_size=60).filter(lambda b: not set(b) & {0, 10, 13}),
            min_size=1,
        )
    )
    def check(values: dict[str, bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", int(env["PORT"]), timeout=30)
        try:
            conn.putrequest("POST", "/webhooks/vapi")
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
            for name, value in values.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            status = conn.getresponse().status
        finally:
            conn.close()
        assert 400 <= status < 500, status

    check()
    assert 0 == sql(env, "SELECT count(*) FROM webhook_delivery_log WHERE event_id LIKE '%c-hdr%'")


def test_a_replayed_signed_request_is_only_ever_a_duplicate(web_process):
    """The exact same signed request sent again (a replay attack within the tolerance) stores nothing new."""
    env, _ = web_process
    body = json.dumps({"message": {"type": "hang", "timestamp": 7, "call": {"id": "c-replay"}}}).encode()
    headers = signed_headers(SIGNER, body)

    codes = [post_raw(env, body, headers) for _ in range(3)]

    assert [200, 200, 200] == codes
    assert 1 == sql(env, "SELECT count(*) FROM webhook_delivery_log")
