"""The real payload corpus end to end: HTTP in, a real Dramatiq worker, calls out, duplicates harmless."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ingest.app import create_app
from ingest.settings import Settings
from tests.helpers import CORPUS_DIR, corpus_files, metric, post, settle, wait_until
from workers.parsing import parse


def _expected_call_ids(files: list[Path], ignored: frozenset[str]) -> set[str]:
    ids = set()
    for f in files:
        e = parse(f.read_bytes())
        if e.type in ("status-update", "end-of-call-report") and e.call_id and e.type not in ignored:
            ids.add(e.call_id)
    return ids


async def _post_all(client: Any, settings: Settings, files: list[Path]) -> dict[str, Any]:
    replies = {}
    for f in files:
        resp = await post(client, settings, f.read_bytes())
        replies[f.name] = (resp.status, await resp.json())
    return replies


async def test_corpus_is_accepted_stored_once_processed_and_counted(client, settings, pool, broker):
    """Every corpus file gets 2xx; every stored delivery completes; one call row per call id; resending adds nothing."""
    files = corpus_files()
    before = await (await client.get("/metrics")).text()

    replies = await _post_all(client, settings, files)

    assert {} == {name: r for name, r in replies.items() if not 200 <= r[0] < 300}
    for f in files:
        e = parse(f.read_bytes())
        if e.type == "tool-calls":
            got = [entry["toolCallId"] for entry in replies[f.name][1]["results"]]
            assert [i.tool_call_id for i in e.tool_invocations()] == got, f.name
    await wait_until(
        lambda: pool.fetchval("SELECT bool_and(status = 'completed') FROM webhook_delivery_log"), timeout_s=30
    )
    rows_before = await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")
    calls = {r["vapi_call_id"] for r in await pool.fetch("SELECT vapi_call_id FROM calls")}
    assert _expected_call_ids(files, settings.ignored_types) <= calls
    assert 0 == await pool.fetchval(
        "SELECT count(*) FROM (SELECT vapi_call_id FROM calls GROUP BY 1 HAVING count(*) > 1) d"
    )
    calls_before = await pool.fetch("SELECT vapi_call_id, status, hang_count, updated_at FROM calls ORDER BY 1")

    again = await _post_all(client, settings, files)

    assert {} == {name: r for name, r in again.items() if not 200 <= r[0] < 300}
    for f in files:
        if f.name.startswith("tool-calls"):
            assert replies[f.name] == again[f.name], f.name
    await settle(broker)  # any (wrongly) enqueued work has run before comparing
    assert rows_before == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")
    assert calls_before == await pool.fetch("SELECT vapi_call_id, status, hang_count, updated_at FROM calls ORDER BY 1")
    after = await (await client.get("/metrics")).text()
    reports = sum(1 for f in files if f.name.startswith("end-of-call-report"))
    for outcome in ("accepted", "duplicate"):
        labels = {"outcome": outcome, "type": "end-of-call-report"}
        assert reports == metric(after, "vapi_webhooks_received_total", **labels) - metric(
            before, "vapi_webhooks_received_total", **labels
        )

    # vapi_deliveries{status="completed"} follows PostgreSQL's statistics, which catch up within about a second.
    async def completed_counted() -> bool:
        text = await (await client.get("/metrics")).text()
        return metric(text, "vapi_deliveries", status="completed") == rows_before

    await wait_until(completed_counted, timeout_s=15, interval_s=0.2, what=f"{rows_before} completed on /metrics")


async def test_captured_headers_with_empty_x_vapi_secret_are_rejected(aiohttp_client, settings, broker, pool):
    """A real capture replayed with its real headers (x-vapi-secret: "") never authenticates."""
    files = corpus_files()
    name = "tool-calls__vapiai-examples-n8n-healthcare-2025-11"
    captured = json.loads((CORPUS_DIR.parent / "headers" / f"{name}.headers.json").read_text())
    scheme = Settings(**{**settings.__dict__, "auth_scheme": "x-vapi-secret"})
    client = await aiohttp_client(create_app(scheme, broker=broker))
    body = next(f for f in files if f.name == f"{name}.json").read_bytes()
    headers = {k: v for k, v in captured.items() if k not in ("host", "content-length", "accept-encoding")}

    resp = await client.post("/webhooks/vapi", data=body, headers=headers)

    assert 401 == resp.status
    assert 0 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")


def _tool_call(tool_call_id: str) -> dict[str, Any]:
    return {
        "message": {
            "type": "tool-calls",
            "timestamp": 1763784256708,
            "call": {"id": "c-t"},
            "toolCallList": [
                {"id": tool_call_id, "type": "function", "function": {"name": "lookUp", "arguments": '{"q": 1}'}}
            ],
        }
    }


async def test_same_tool_call_id_sent_20_times_concurrently_runs_once(client, settings, pool):
    """20 concurrent copies of one tool call: one delivery row (beside the message's own), 20 identical replies."""
    responses = await asyncio.gather(*(post(client, settings, _tool_call("call_same")) for _ in range(20)))

    bodies = [await r.json() for r in responses]
    assert [200] * 20 == [r.status for r in responses]
    assert 1 == len({json.dumps(b, sort_keys=True) for b in bodies})
    assert {"results": [{"toolCallId": "call_same", "name": "lookUp", "error": "unknown tool: lookUp"}]} == bodies[0]
    assert 1 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log WHERE event_id = 'tool-call:call_same'")
    assert 1 == await pool.fetchval(
        "SELECT count(*) FROM webhook_delivery_log WHERE event_id LIKE 'tool-calls:message:%'"
    )
    assert 1 == await pool.fetchval("SELECT attempts FROM webhook_delivery_log WHERE event_id = 'tool-call:call_same'")


async def test_tool_call_reply_is_single_line(client, settings):
    """Vapi requires single-line result/error strings (FINDINGS.md §1)."""
    payload = _tool_call("call_nl")
    payload["message"]["toolCallList"][0]["function"]["name"] = "two\nlines"

    body = await (await post(client, settings, payload)).json()

    assert "unknown tool: two lines" == body["results"][0]["error"]


async def test_sender_signs_like_vapi(settings, client):
    """`vapi-ingest send` signs each body so the receiver accepts it (HMAC, fresh timestamp)."""
    from ingest.sender import send

    files = corpus_files()[:5]
    url = str(client.make_url("/webhooks/vapi"))

    report = await send(settings, files, url, concurrency=3, repeat=2)

    assert [] == report.errors
    assert sum(report.statuses.values()) == 10
    assert all(200 <= s < 300 for s in report.statuses)
