"""Envelope parsing, timestamps and idempotency keys (FINDINGS.md §1 and §4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from workers.messages import Envelope, InvalidEnvelope, tool_event_id
from workers.parsing import parse, parse_timestamp


def env(message: dict) -> Envelope:
    return parse(json.dumps({"message": message}).encode())


def test_iso_and_epoch_ms_timestamps_normalise_to_the_same_instant():
    """Vapi switched timestamp from ISO strings to epoch ms; both parse to aware UTC."""
    expected = datetime(2024, 9, 22, 18, 44, 25, 8000, tzinfo=UTC)

    assert expected == parse_timestamp(1727030665008)
    assert expected == parse_timestamp("2024-09-22T18:44:25.008Z")
    assert expected == parse_timestamp("1727030665008")
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(10**30) is None
    assert parse_timestamp(True) is None


def test_keys_per_type():
    """One key per report, per (call, status), per tool call, and per (call, type, time) otherwise."""
    call = {"id": "c1"}

    assert "end-of-call-report:c1" == env({"type": "end-of-call-report", "call": call, "timestamp": 5}).event_id()
    assert "status-update:c1:ended" == env({"type": "status-update", "status": "ended", "call": call}).event_id()
    assert (
        "hang:c1:2024-09-22T18:44:25.008+00:00"
        == env({"type": "hang", "call": call, "timestamp": "2024-09-22T18:44:25.008Z"}).event_id()
    )
    assert (
        env({"type": "hang", "call": call, "timestamp": 1727030665008}).event_id()
        == env({"type": "hang", "call": call, "timestamp": "2024-09-22T18:44:25.008Z"}).event_id()
    )


def test_legacy_function_call_key_uses_call_timestamp_and_name():
    """function-call carries no id: (call id, timestamp, function name)."""
    e = env(
        {
            "type": "function-call",
            "call": {"id": "c1"},
            "timestamp": 1000,
            "functionCall": {"name": "book", "parameters": "{}"},
        }
    )

    assert "function-call:c1:1970-01-01T00:00:01.000+00:00:book" == tool_event_id(e, e.tool_invocations()[0])


def test_messages_without_call_fall_back_to_chat_session_campaign_then_body_hash():
    """chat.*, session.* and campaign messages key on their own ids; a bare message on its body hash."""
    assert (
        "chat.created:chat:ch1:1970-01-01T00:00:00.005+00:00"
        == env({"type": "chat.created", "chat": {"id": "ch1"}, "timestamp": 5}).event_id()
    )
    assert (
        env({"type": "campaign.predial", "campaignId": "k1", "timestamp": 5})
        .event_id()
        .startswith("campaign.predial:campaign:k1:")
    )
    bare = env({"type": "hang", "call": {}})
    assert bare.event_id().startswith("hang:sha256:")


def test_tool_call_shapes_real_flattened_and_json_string_arguments():
    """Real (function.arguments object), documented flattened (parameters) and JSON-string arguments all parse."""
    e = env(
        {
            "type": "tool-calls",
            "toolCallList": [
                {"id": "t1", "type": "function", "function": {"name": "a", "arguments": {"x": 1}}},
                {"id": "t2", "name": "b", "parameters": {"y": 2}},
                {"id": "t3", "function": {"name": "c", "arguments": json.dumps({"z": 3})}},
                {"id": "t4", "function": {"name": "d", "arguments": "not json"}},
                "garbage",
            ],
        }
    )

    got = [(i.tool_call_id, i.name, i.arguments) for i in e.tool_invocations()]

    assert [("t1", "a", {"x": 1}), ("t2", "b", {"y": 2}), ("t3", "c", {"z": 3}), ("t4", "d", {})] == got
    assert "tool-call:t1" == tool_event_id(e, e.tool_invocations()[0])


def test_type_is_optional_for_tool_calls_only():
    """The OAS makes type optional in ServerMessageToolCalls; elsewhere it is required."""
    assert "tool-calls" == env({"toolCallList": []}).type
    with pytest.raises(InvalidEnvelope):
        env({"status": "ended"})


def test_wrong_types_in_fields_do_not_raise():
    """A call that is a string, an assistant that is a list: routing ids are simply absent."""
    e = env({"type": "status-update", "status": "ended", "call": "c1", "assistant": [1], "phoneNumber": 7})

    assert (None, None, None) == (e.call_id, e.assistant_id, e.phone_number_id)
    assert e.event_id().startswith("status-update:sha256:")
