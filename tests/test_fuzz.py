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

from ingest import auth
from ingest.settings import Settings
from tests.conftest import SECRET
from tests.procs import sql, start, stop, wait_for

ADMIN = "admin-token-0123456789"
SIGNER = Settings(webhook_secrets=(SECRET.encode(),))
#: Derandomized so CI is reproducible; run with HYPOTHESIS_RANDOM=1 (and SCHEMATHESIS_SEED unset) to explore.
FUZZ = settings(max_examples=150, deadline=None, derandomize=not os.environ.get("HYPOTHESIS_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
SCHEMATHESIS_SEED = os.environ.get("SCHEMATHESIS_SEED", "20261122")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)  # fmt: skip
#: A real message's fields, each replaced by anything (wrong types, missing, unicode).
message_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["status-update", "end-of-call-report", "hang", "tool-calls", "function-call",
                                 "assistant-request", "x"]) | json_values,
        "status": json_values, "timestamp": json_values, "call": json_values | st.fixed_dictionaries(
            {}, optional={"id": json_values, "assistantId": json_values, "customer": json_values}),
        "toolCallList": json_values | st.lists(st.fixed_dictionaries({}, optional={
            "id": json_values, "function": json_values, "name": json_values, "parameters": json_values}), max_size=3),
        "functionCall": json_values, "endedReason": json_values, "startedAt": json_values, "endedAt": json_values,
        "cost": json_values, "durationSeconds": json_values, "artifact": json_values, "assistant": json_values,
        "phoneNumber": json_values,
    },
)  # fmt: skip


@pytest.fixture
def web(env, tmp_path):
    """The real web process (ADMIN_TOKEN set), its log, and a worker so accepted deliveries get processed."""
    env = {**env, "ADMIN_TOKEN": ADMIN}
    org = subprocess.run([str(Path(sys.executable).with_name("vapi-ingest")), "orgs", "create", "--name", "Fuzz"],
                         env=env, capture_output=True, text=True, check=True)  # fmt: skip
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
    @given(body=st.binary(max_size=2000), headers=st.dictionaries(
        st.sampled_from(["x-signature", "x-timestamp", "x-vapi-secret", "Authorization", "Content-Type"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)))  # fmt: skip
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
        headers = {"Content-Type": "application/json", **auth.sign(SIGNER, body)}
        status = _post(env, body, headers)
        assert status < 500, status

    check()


def test_signed_deeply_nested_and_huge_numbers_never_5xx(web):
    """Nesting beyond Python's recursion limit and numbers with thousands of digits are 400 or 2xx, never 5xx."""
    env, _ = web
    bodies = [
        b'{"message": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"message": {"type": "hang", "timestamp": ' + b"9" * 5000 + b', "call": {"id": "c"}}}',
        json.dumps({"message": {"type": "status-update", "status": "\u202e\u0000\ud7ff", "call": {"id": "\u00e9" * 500}}}).encode(),
    ]
    for body in bodies:
        headers = {"Content-Type": "application/json", **auth.sign(SIGNER, body)}
        assert _post(env, body, headers) < 500


def test_a_replayed_signed_request_is_only_ever_a_duplicate(web):
    """The exact same signed request sent again (a replay attack within the tolerance) stores nothing new."""
    env, _ = web
    body = json.dumps({"message": {"type": "hang", "timestamp": 7, "call": {"id": "c-replay"}}}).encode()
    headers = {"Content-Type": "application/json", **auth.sign(SIGNER, body)}

    codes = [_post(env, body, headers) for _ in range(3)]

    assert [200, 200, 200] == codes
    assert 1 == sql(env, "SELECT count(*) FROM webhook_delivery_log")


def test_schemathesis_admin_api_never_5xx_and_matches_its_schema(web):
    """schemathesis generates requests from /api/openapi.json (admin token): no 5xx, responses match the schema."""
    env, _ = web
    result = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "run", f"http://127.0.0.1:{env['PORT']}/api/openapi.json",
         "-H", f"Authorization: Bearer {ADMIN}", "-n", "30", *(["--seed", SCHEMATHESIS_SEED] if SCHEMATHESIS_SEED else []),
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert 0 == result.returncode, result.stdout[-4000:]
    assert " passed" in result.stdout
