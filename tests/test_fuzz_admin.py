"""Bad input against the real web process's admin API: hypothesis on parameters and bodies, schemathesis on the schema.

Properties: never a 5xx, responses match the OpenAPI document.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import ADMIN, FUZZ, SCHEMATHESIS_SEED, any_text, json_values


def test_admin_api_hostile_parameters_and_bodies_never_5xx(web_process):
    """Admin API query parameters of any text (surrogates percent-encoded) and replay bodies of any shape, with
    extreme dates and deep nesting: 2xx or 4xx with a reason, never 5xx."""
    from urllib.parse import quote

    env, _ = web_process
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


def test_schemathesis_admin_api_never_5xx_and_matches_its_schema(web_process):
    """schemathesis generates requests from /api/openapi.json (admin token): no 5xx, responses match the schema."""
    env, _ = web_process
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
