"""Bad input and security against the real web process: hypothesis fuzzing of the receiver, schemathesis on the admin API.

Properties: never a 5xx, never a stored row without a valid credential, never
an unhandled exception in the log, no secret in the log.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import SECRET, SIGNER, signed_headers
from tests.procs import sql, start, stop, wait_for

ADMIN = "admin-token-0123456789"
#: Derandomized so CI is reproducible; run with HYPOTHESIS_RANDOM=1 (and SCHEMATHESIS_SEED unset) to explore.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=not os.environ.get("HYPOTHESIS_RANDOM"),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
SCHEMATHESIS_SEED = os.environ.get("SCHEMATHESIS_SEED", "20261122")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
#: A real message's fields, each replaced by anything (wrong types, missing, unicode).
message_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["status-update", "end-of-call-report", "hang", "tool-calls", "function-call", "assistant-request", "x"]
        )
        | json_values,
        "status": json_values,
        "timestamp": json_values,
        "call": json_values
        | st.fixed_dictionaries({}, optional={"id": json_values, "assistantId": json_values, "customer": json_values}),
        "toolCallList": json_values
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={"id": json_values, "function": json_values, "name": json_values, "parameters": json_values},
            ),
            max_size=3,
        ),
        "functionCall": json_values,
        "endedReason": json_values,
        "startedAt": json_values,
        "endedAt": json_values,
        "cost": json_values,
        "durationSeconds": json_values,
        "artifact": json_values,
        "assistant": json_values,
        "phoneNumber": json_values,
    },
)


@pytest.fixture
def web(env, tmp_path):
    """The real web process (ADMIN_TOKEN set), its log, and a worker so accepted deliveries get processed."""
    env = {**env, "ADMIN_TOKEN": ADMIN}
    org = subprocess.run(
        [str(Path(sys.executable).with_name("vapi-ingest")), "orgs", "create", "--name", "Fuzz"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    env["VAPI_DEFAULT_ORG_ID"] = org.stdout.strip()
    log = tmp_path / "web.log"
    procs = [start("serve", env, log), start("worker", env, tmp_path / "worker.log")]
    wait_for(f"http://127.0.0.1:{env['PORT']}/readyz")
    yield env, log
    for proc in procs:
        stop(proc)
    text = log.read_text() + (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "Error handling request" not in text
    assert SECRET not in text and ADMIN not in text


def _post(env: dict[str, str], body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", int(env["PORT"]), timeout=30)
    try:
        conn.request("POST", "/webhooks/vapi", body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_unsigned_random_bytes_are_never_stored_and_never_5xx(web):
    """Random bytes with random or no credentials: always 4xx, and nothing is stored."""
    env, _ = web

    @FUZZ
    @given(
        body=st.binary(max_size=2000),
        headers=st.dictionaries(
            st.sampled_from(["x-signature", "x-timestamp", "x-vapi-secret", "Authorization", "Content-Type"]),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
        ),
    )
    def check(body: bytes, headers: dict[str, str]) -> None:
        status = _post(env, body, headers)
        assert 400 <= status < 500, status

    check()
    assert 0 == sql(env, "SELECT count(*) FROM webhook_delivery_log")
    assert 0 == sql(env, "SELECT count(*) FROM webhook_quarantine")


def test_signed_random_messages_never_5xx(web):
    """Validly signed bodies with every field of a message replaced by anything: never a 5xx."""
    env, _ = web

    @FUZZ
    @given(message=message_fields, wrap=st.booleans())
    def check(message: dict, wrap: bool) -> None:
        body = json.dumps({"message": message} if wrap else message).encode()
        headers = signed_headers(SIGNER, body)
        status = _post(env, body, headers)
        assert status < 500, status

    check()


def test_signed_deeply_nested_and_huge_numbers_never_5xx(web):
    """Nesting beyond Python's recursion limit and numbers with thousands of digits are 400 or 2xx, never 5xx."""
    env, _ = web
    bodies = [
        b'{"message": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"message": {"type": "hang", "timestamp": ' + b"9" * 5000 + b', "call": {"id": "c"}}}',
        json.dumps(
            {"message": {"type": "status-update", "status": "\u202e\u0000\ud7ff", "call": {"id": "\u00e9" * 500}}}
        ).encode(),
    ]
    for body in bodies:
        headers = signed_headers(SIGNER, body)
        assert _post(env, body, headers) < 500


#: Any text, unpaired surrogates included (what JavaScript sends when a string is cut mid-emoji).
any_text = st.lists(st.integers(0, 0x10FFFF), max_size=40).map(lambda cps: "".join(map(chr, cps)))
#: Ids of every size around the 256-character bound, in any script, or not strings at all.
hostile_ids = any_text | st.text(min_size=250, max_size=300) | st.just("x" * 5000) | json_values
#: Timestamps in every form: epoch ms of any size, floats, digit strings of any length, calendar edges, junk.
hostile_timestamps = (
    st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(0, 10**400).map(str)
    | st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "9" * 6000,
            "²³",
            "1e400",
            "2024-02-30T00:00:00Z",
            "-1",
            " ",
            "T",
        ]
    )
    | any_text
)
hostile_messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["status-update", "end-of-call-report", "hang", "tool-calls", "function-call"])
        | any_text
    },
    optional={
        "status": hostile_ids,
        "timestamp": hostile_timestamps,
        "campaignId": hostile_ids,
        "call": st.fixed_dictionaries(
            {},
            optional={
                "id": hostile_ids,
                "assistantId": hostile_ids,
                "phoneNumberId": hostile_ids,
                "customer": json_values,
            },
        ),
        "chat": st.fixed_dictionaries({}, optional={"id": hostile_ids}),
        "toolCallList": st.lists(
            st.fixed_dictionaries(
                {"id": hostile_ids},
                optional={
                    "function": st.fixed_dictionaries(
                        {"name": hostile_ids}, optional={"arguments": any_text | json_values}
                    )
                },
            ),
            max_size=40,
        ),
        "transcript": any_text,
        "cost": st.sampled_from(["1e400", "-1e400", "1e-400", "9" * 5000]),
        "nested": st.integers(1, 3000),
    },
)


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


def test_signed_hostile_envelopes_never_5xx(web):
    """Every envelope field in hostile forms (surrogates, ids at and past the bound, timestamps at the calendar's
    edges and of any length, numbers beyond double range, deep nesting, 40 tool calls): 2xx or 4xx, never 5xx."""
    env, _ = web

    @FUZZ
    @given(message=hostile_messages)
    def check(message: dict) -> None:
        body = _hostile_body(message)
        headers = signed_headers(SIGNER, body)
        status = _post(env, body, headers)
        assert status < 500, (status, body[:300])

    check()


def test_credential_headers_of_any_bytes_never_5xx(web):
    """Credential headers carrying any bytes (not UTF-8 included), on a signed body: 401, never 5xx, nothing stored."""
    env, _ = web
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


def test_admin_api_hostile_parameters_and_bodies_never_5xx(web):
    """Admin API query parameters of any text (surrogates percent-encoded) and replay bodies of any shape, with
    extreme dates and deep nesting: 2xx or 4xx with a reason, never 5xx."""
    from urllib.parse import quote

    env, _ = web
    auth_header = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    dates = (
        st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9" * 100, "2024-01-01"]) | any_text
    )

    @FUZZ
    @given(
        path=st.sampled_from(
            [
                "dead-letter-queue?page=",
                "recent-failures?limit=",
                "delivery-stats?range=",
                "processing-time?range=",
                "dead-letter-queue?per_page=",
            ]
        ),
        value=any_text | st.integers().map(str),
        body=st.fixed_dictionaries(
            {},
            optional={
                "status": json_values | st.sampled_from(["failed", "dead_letter"]),
                "ids": json_values,
                "since": dates,
                "until": dates,
                "error": any_text,
                "type": any_text,
                "org_id": json_values,
            },
        ),
        depth=st.integers(0, 5000),
    )
    def check(path: str, value: str, body: dict, depth: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", int(env["PORT"]), timeout=30)
        try:
            conn.request(
                "GET",
                f"/api/webhook-metrics/{path}" + quote(value.encode("utf-8", "surrogatepass")),
                headers=auth_header,
            )
            got = conn.getresponse()
            got.read()
            assert got.status < 500, (path, value)
            raw = json.dumps({**body, "dry_run": True}).encode()
            if depth:
                raw = raw[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
            conn.request("POST", "/api/webhook-metrics/replay", body=raw, headers=auth_header)
            got = conn.getresponse()
            got.read()
            assert got.status < 500, raw[:300]
        finally:
            conn.close()

    check()


def test_a_replayed_signed_request_is_only_ever_a_duplicate(web):
    """The exact same signed request sent again (a replay attack within the tolerance) stores nothing new."""
    env, _ = web
    body = json.dumps({"message": {"type": "hang", "timestamp": 7, "call": {"id": "c-replay"}}}).encode()
    headers = signed_headers(SIGNER, body)

    codes = [_post(env, body, headers) for _ in range(3)]

    assert [200, 200, 200] == codes
    assert 1 == sql(env, "SELECT count(*) FROM webhook_delivery_log")


def test_schemathesis_admin_api_never_5xx_and_matches_its_schema(web):
    """schemathesis generates requests from /api/openapi.json (admin token): no 5xx, responses match the schema."""
    env, _ = web
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"http://127.0.0.1:{env['PORT']}/api/openapi.json",
            "-H",
            f"Authorization: Bearer {ADMIN}",
            "-n",
            "30",
            *(["--seed", SCHEMATHESIS_SEED] if SCHEMATHESIS_SEED else []),
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert 0 == result.returncode, result.stdout[-4000:]
    assert " passed" in result.stdout
