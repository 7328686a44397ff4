"""Shared by the fuzz tests: hypothesis settings and strategies, and the real web process they attack."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.helpers import SECRET
from tests.procs import start, stop, wait_for

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


@pytest.fixture
def web_process(env, tmp_path):
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


def post_raw(env: dict[str, str], body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to the web process's /webhooks/vapi; the status code."""
    conn = http.client.HTTPConnection("127.0.0.1", int(env["PORT"]), timeout=30)
    try:
        conn.request("POST", "/webhooks/vapi", body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()
