"""The booking tools through the receiver, as Vapi calls them: real HTTP, real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.helpers import LONDON, book_args, business_day, found, metric, post, tool_call
from workers.handlers.booking import BOOKING_TOOLS, REQUIRED_ARGUMENTS

TOOLS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "vapi" / "tools"


async def ask(client: Any, settings: Any, body: dict) -> dict:
    resp = await post(client, settings, body)
    assert 200 == resp.status
    return (await resp.json())["results"][0]


async def test_booking_reply_is_one_readable_line(client, settings, pool):
    """A booking answers 'Booked cleaning for Jane Doe on Mon ... at 14:00.' and stores a normalised lead."""
    day = business_day()

    entry = await ask(client, settings, tool_call("t-1", "bookClinicAppointment", book_args(day, "14:00")))

    assert "t-1" == entry["toolCallId"] and "bookClinicAppointment" == entry["name"]
    assert entry["result"].startswith(f"Booked cleaning for Jane Doe on Mon {day.day} {day:%b %Y} at 14:00.")
    appointment_id = found(r"Appointment id ([0-9a-f-]{36})", entry["result"])
    lead = await pool.fetchrow(
        "SELECT l.name, l.phone FROM appointments a JOIN leads l ON l.id = a.contact_id WHERE a.id = $1::uuid",
        appointment_id,
    )
    assert ("Jane Doe", "+442071838750") == (lead["name"], lead["phone"])


async def test_conflict_offers_the_nearest_free_times(client, settings):
    """A taken 14:00 is answered with the next three free starts."""
    day = business_day()
    await ask(client, settings, tool_call("t-1", "bookClinicAppointment", book_args(day, "14:00")))

    entry = await ask(
        client, settings, tool_call("t-2", "bookClinicAppointment", book_args(day, "14:00", phone="020 7183 8751"))
    )

    assert "That time is taken. The nearest free times are 14:30, 15:00 and 15:30." == entry["error"]


async def test_200_concurrent_requests_for_one_slot_book_exactly_once(client, settings, pool):
    """200 different tool calls for the same slot at once: exactly one 'Booked' reply, one appointment."""
    day = business_day()
    bodies = [
        tool_call(f"t-{i}", "bookClinicAppointment", book_args(day, "10:00", phone=f"+4420718{i:05d}"))
        for i in range(200)
    ]

    entries = await asyncio.gather(*(ask(client, settings, b) for b in bodies))

    booked = [e for e in entries if e.get("result", "").startswith("Booked")]
    taken = [e for e in entries if e.get("error", "").startswith("That time is taken.")]
    assert (1, 199) == (len(booked), len(taken))
    assert 1 == await pool.fetchval("SELECT count(*) FROM appointments")


async def test_same_tool_call_id_20_times_books_once_with_identical_replies(client, settings, pool):
    """Vapi retrying one tool call: one appointment, 20 identical replies."""
    body = tool_call("t-same", "bookClinicAppointment", book_args(business_day(), "11:00"))

    entries = await asyncio.gather(*(ask(client, settings, body) for _ in range(20)))

    assert 1 == len({json.dumps(e, sort_keys=True) for e in entries})
    assert entries[0]["result"].startswith("Booked")
    assert 1 == await pool.fetchval("SELECT count(*) FROM appointments")


async def test_arguments_as_json_string_and_flattened_shape(client, settings, pool):
    """Arguments may be a JSON string (OAS) or come in the flattened {id, name, parameters} shape (docs)."""
    day = business_day()
    as_string = tool_call("t-s", "bookClinicAppointment", json.dumps(book_args(day, "09:00")))
    flattened = tool_call(
        "t-f", "bookClinicAppointment", book_args(day, "12:00", phone="020 7183 8751"), flattened=True
    )

    first = await ask(client, settings, as_string)
    second = await ask(client, settings, flattened)

    assert first["result"].startswith("Booked") and second["result"].startswith("Booked")
    assert 2 == await pool.fetchval("SELECT count(*) FROM appointments")


async def test_phone_defaults_to_the_callers_number(client, settings, pool):
    """Without a phone argument the lead gets call.customer.number, in E.164."""
    args = book_args(business_day(), "15:00")
    del args["phone"]

    entry = await ask(client, settings, tool_call("t-c", "bookClinicAppointment", args, customer="+14155552671"))

    assert entry["result"].startswith("Booked")
    assert "+14155552671" == await pool.fetchval("SELECT phone FROM leads")


async def test_invalid_inputs_become_error_strings_not_http_errors(client, settings, pool):
    """Bad phone, bad e-mail, a weekend, a past time: each an error string with its code; nothing booked."""
    day = business_day()
    cases = {
        "INVALID_PHONE": book_args(day, "10:00", phone="12"),
        "INVALID_EMAIL": book_args(day, "10:00", email="jane@@example"),
        "INVALID_TIME: we are closed": book_args(day + timedelta(days=5), "10:00"),
        "INVALID_TIME: 18:00-18:30 is outside": book_args(day, "18:00"),
        "INVALID_ARGUMENTS": {"name": "x", "phone": "020 7183 8750"},
    }

    for i, (expected, args) in enumerate(cases.items()):
        entry = await ask(client, settings, tool_call(f"t-bad-{i}", "bookClinicAppointment", args))
        assert entry["error"].startswith(expected), entry

    assert 0 == await pool.fetchval("SELECT count(*) FROM appointments")


async def test_a_booking_without_a_required_argument_books_nothing_and_names_what_is_missing(client, settings, pool):
    """The published definition requires name, serviceType and scheduledAt: a call without name and
    serviceType (blank counts as missing) is answered with both, so the assistant asks for them; nothing booked."""
    args = book_args(business_day(), "10:00", name="  ")
    del args["serviceType"]

    entry = await ask(client, settings, tool_call("t-req", "bookClinicAppointment", args))

    assert "INVALID_ARGUMENTS: name and serviceType are required" == entry["error"]
    assert 0 == await pool.fetchval("SELECT count(*) FROM appointments")


def test_each_tool_requires_what_its_published_definition_requires():
    """deploy/vapi/tools/<name>.json (what a clinic gives Vapi) and the tools' own checks agree, tool by tool."""
    published = {
        path.stem: tuple(json.loads(path.read_text())["function"]["parameters"].get("required", ()))
        for path in TOOLS_DIR.glob("*.json")
    }

    assert published == REQUIRED_ARGUMENTS
    assert set(published) == set(BOOKING_TOOLS)


async def test_stale_year_is_corrected_and_the_reply_says_so(client, settings, pool):
    """A date with a past year is booked at its next occurrence, and the reply names it."""
    day = business_day()
    stale = day.replace(year=day.year - 2)

    entry = await ask(client, settings, tool_call("t-y", "bookClinicAppointment", book_args(stale, "10:00")))

    assert f"has passed, so this is for {day:%A} {day.day} {day:%B %Y}." in entry["result"]
    assert day == (await pool.fetchval("SELECT scheduled_at FROM appointments")).astimezone(LONDON).date()


async def test_check_cancel_and_reschedule_tools(client, settings, pool):
    """checkAvailability lists free times; rescheduleAppointment moves; cancelAppointment frees the slot."""
    day = business_day()
    booked = await ask(client, settings, tool_call("t-1", "bookClinicAppointment", book_args(day, "09:00")))
    appointment_id = found(r"Appointment id ([0-9a-f-]{36})", booked["result"])

    free = await ask(client, settings, tool_call("t-2", "checkAvailability", {"date": str(day)}))
    exact = await ask(client, settings, tool_call("t-3", "checkAvailability", {"scheduledAt": f"{day}T09:00"}))
    moved = await ask(
        client,
        settings,
        tool_call("t-4", "rescheduleAppointment", {"appointmentId": appointment_id, "newScheduledAt": f"{day}T13:00"}),
    )
    new_id = found(r"New appointment id ([0-9a-f-]{36})", moved["result"])
    cancelled = await ask(client, settings, tool_call("t-5", "cancelAppointment", {"appointmentId": new_id}))
    again = await ask(client, settings, tool_call("t-6", "cancelAppointment", {"appointmentId": new_id}))

    assert free["result"].startswith(f"Free times on Mon {day.day} {day:%b %Y}: 09:30, 10:00,")
    assert exact["error"].startswith("That time is taken. The nearest free times are 09:30")
    assert moved["result"].startswith(f"Moved to Mon {day.day} {day:%b %Y} at 13:00.")
    assert "The appointment is cancelled." == cancelled["result"]
    assert again["error"].startswith("NOT_FOUND")
    assert 0 == await pool.fetchval("SELECT count(*) FROM appointments WHERE deleted_at IS NULL")


async def test_booking_metrics_count_outcomes(client, settings):
    """vapi_booking_attempts_total counts booked and slot_unavailable outcomes per tool."""
    day = business_day()

    def value(text: str, outcome: str) -> float:
        return metric(text, "vapi_booking_attempts_total", outcome=outcome, tool="bookClinicAppointment")

    before = await (await client.get("/metrics")).text()
    await ask(client, settings, tool_call("t-1", "bookClinicAppointment", book_args(day, "16:00")))
    await ask(
        client, settings, tool_call("t-2", "bookClinicAppointment", book_args(day, "16:00", phone="020 7183 8751"))
    )
    after = await (await client.get("/metrics")).text()

    assert 1 == value(after, "booked") - value(before, "booked")
    assert 1 == value(after, "slot_unavailable") - value(before, "slot_unavailable")
    assert "vapi_booking_duration_seconds_bucket" in after


def test_every_tool_has_a_definition_naming_the_arguments_it_reads():
    """deploy/vapi/tools/ holds one definition per tool, with the argument names the handlers use."""
    defined = {p.stem: json.loads(p.read_text()) for p in TOOLS_DIR.glob("*.json")}
    handlers_src = (Path(__file__).resolve().parents[1] / "workers" / "handlers" / "booking.py").read_text()

    assert set(BOOKING_TOOLS) == set(defined)
    for name, spec in defined.items():
        assert name == spec["function"]["name"]
        for arg in spec["function"]["parameters"]["properties"]:
            assert f'"{arg}"' in handlers_src, (name, arg)
