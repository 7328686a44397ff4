"""No credentials at rest: what Vapi echoes (server secrets, Twilio tokens, OAuth secrets, live-call monitor URLs)
is redacted before a payload is stored, at any depth and inside JSON-string tool arguments."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import post
from workers.parsing import parse
from workers.sanitize import REDACTED, is_credential_key

#: Values that must never be stored, as real payloads carry them (FINDINGS.md §1, §2).
LEAKS = {
    "serverUrlSecret": "sus-0001",
    "secret": "srv-0002",
    "twilioAuthToken": "twt-0003",
    "twilioApiSecret": "tws-0004",
    "password": "sip-0005",
    "clientSecret": "oau-0006",
    "accessToken": "acc-0007",
    "api_key": "key-0008",
    "Authorization": "Bearer abc-0009",
    "privateKey": "pk-0010",
    "listenUrl": "wss://aws-us-west-2-production1-phone-call-websocket.vapi.ai/x/listen",
    "controlUrl": "https://aws-us-west-2-production1-phone-call-websocket.vapi.ai/x/control",
}


def _message_with_leaks() -> dict:
    return {
        "message": {
            "type": "tool-calls",
            "timestamp": 1,
            "serverUrlSecret": LEAKS["serverUrlSecret"],
            "call": {
                "id": "c-leak",
                "monitor": {"listenUrl": LEAKS["listenUrl"], "controlUrl": LEAKS["controlUrl"]},
                "customer": {"number": "+442071838750"},
            },
            "phoneNumber": {"twilioAuthToken": LEAKS["twilioAuthToken"], "twilioApiSecret": LEAKS["twilioApiSecret"]},
            "assistant": {
                "server": {"secret": LEAKS["secret"], "url": "https://clinic.example/hook"},
                "credentials": [{"provider": "sip", "password": LEAKS["password"]}],
                "oauth": {"clientSecret": LEAKS["clientSecret"], "accessToken": LEAKS["accessToken"]},
            },
            "toolCallList": [
                {
                    "id": "t-leak",
                    "type": "function",
                    "function": {
                        "name": "lookUp",
                        "arguments": json.dumps(
                            {"q": 1, "api_key": LEAKS["api_key"], "nested": {"Authorization": LEAKS["Authorization"]}}
                        ),
                    },
                }
            ],
            "toolWithToolCallList": [
                {"type": "function", "server": {"privateKey": LEAKS["privateKey"]}, "toolCall": {"id": "t-leak"}}
            ],
            "costBreakdown": {"llmPromptTokens": 120, "llmCompletionTokens": 40},
        }
    }


async def test_credentials_are_absent_from_every_stored_row(client, settings, pool):
    """A tool-call message carrying every kind of credential: no row holds any of them; token counts are kept."""
    resp = await post(client, settings, _message_with_leaks())

    assert 200 == resp.status
    stored = " ".join(r["p"] for r in await pool.fetch("SELECT payload::text AS p FROM webhook_delivery_log"))
    assert 2 == len(await pool.fetch("SELECT 1 FROM webhook_delivery_log"))
    for key, value in LEAKS.items():
        assert value not in stored, key
    assert REDACTED in stored and '"llmPromptTokens": 120' in stored
    assert "+442071838750" in stored and "https://clinic.example/hook" in stored


async def test_quarantined_messages_are_redacted_too(aiohttp_client, db_dsn, broker, pool):
    """A message no org claims is stored in quarantine without its credentials."""
    import dataclasses

    from ingest.app import create_app
    from tests.helpers import make_settings

    settings = make_settings(db_dsn)
    client = await aiohttp_client(create_app(dataclasses.replace(settings), broker=broker))
    await post(client, settings, _message_with_leaks())

    stored = await pool.fetchval("SELECT payload::text FROM webhook_quarantine")
    assert all(value not in stored for value in LEAKS.values())


def test_the_credential_key_rule():
    """Credential-like keys by name; counts and ids that merely mention tokens are not."""
    assert all(
        is_credential_key(k)
        for k in [*LEAKS, "x-vapi-secret", "refresh_token", "API-KEY", "passwd", "credentialId", "secretKey"]
    )
    assert not any(is_credential_key(k) for k in ["promptTokens", "tokens", "name", "number", "url", "tokenType"])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    key=st.sampled_from(list(LEAKS)).map(lambda k: "".join(c.upper() if i % 2 else c for i, c in enumerate(k))),
    path=st.lists(st.sampled_from(["a", "b", "0"]), max_size=6),
    value=st.text(min_size=8, max_size=30).map(lambda t: "leak-" + t),
)
def test_a_credential_at_any_depth_and_case_is_redacted(key, path, value):
    """Any credential key, in any letter case, at any depth of objects and lists, is redacted before storage."""
    node: object = {key: value}
    for step in reversed(path):
        node = [node] if step == "0" else {step: node}
    body = json.dumps({"message": {"type": "hang", "timestamp": 1, "call": {"id": "c"}, "x": node}}).encode()

    stored = json.dumps(parse(body).message)

    assert value not in stored and json.dumps(value) not in stored


async def test_migration_redacts_credentials_already_stored(template_db):
    """Rows stored before the rule (0006 and earlier) lose their credentials when 0007 runs; the rest is kept."""
    import asyncpg

    from db.migrate import migrate
    from tests.helpers import database_at

    async with database_at("0006") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('c') RETURNING id")
            await conn.execute(
                "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload) VALUES ($1, 'hang', 'k', $2)",
                org,
                json.dumps(
                    {
                        "call": {"monitor": {"listenUrl": LEAKS["listenUrl"]}, "id": "c-old"},
                        "serverUrlSecret": LEAKS["serverUrlSecret"],
                        "tokens": 5,
                    }
                ),
            )
            await migrate(dsn)
            stored = json.loads(await conn.fetchval("SELECT payload::text FROM webhook_delivery_log"))
        finally:
            await conn.close()
    assert {
        "call": {"monitor": {"listenUrl": REDACTED}, "id": "c-old"},
        "serverUrlSecret": REDACTED,
        "tokens": 5,
    } == stored
