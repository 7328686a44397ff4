"""Normalisation and time rules of the booking tools, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from workers.errors import ToolError
from workers.handlers import contacts, schedule
from workers.hours import BusinessHours

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # a Sunday; 10:00 in London
HOURS = BusinessHours({d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  jane   doe ", "Jane Doe"),
        ("o'brien", "O'Brien"),
        ("ANNE-MARIE smith", "Anne-Marie Smith"),
        ("McDonald", "McDonald"),
        ("josé álvarez", "José Álvarez"),
        ("ØYVIND ÆRØ", "Øyvind Ærø"),
    ],
)
def test_names_are_title_cased_but_deliberate_capitals_kept(raw, expected):
    """Title case per part; mixed-case parts as typed; non-ASCII letters follow Unicode."""
    assert expected == contacts.normalise_name(raw)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("020 7183 8750", "GB", "+442071838750"),
        ("+1 (415) 555-2671", "GB", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
    ],
)
def test_phones_become_e164_in_the_orgs_region(raw, region, expected):
    """National numbers are read in the org's default region; international ones keep their country."""
    assert expected == contacts.normalise_phone(raw, region)


@pytest.mark.parametrize("raw", ["12", "not a number", "+44 20 7183"])
def test_impossible_phone_is_invalid_phone(raw):
    """A number libphonenumber cannot make valid is INVALID_PHONE."""
    with pytest.raises(ToolError) as err:
        contacts.normalise_phone(raw, "GB")
    assert "INVALID_PHONE" == err.value.code


def test_email_is_trimmed_lowercased_and_checked():
    """Trimmed and lower-cased; a malformed address is INVALID_EMAIL (no DNS involved)."""
    assert "jane.doe@example.com" == contacts.normalise_email("  Jane.Doe@Example.COM ")
    with pytest.raises(ToolError) as err:
        contacts.normalise_email("jane@@example")
    assert "INVALID_EMAIL" == err.value.code


def test_time_without_offset_is_org_local_and_with_offset_is_converted():
    """'2026-12-01T14:00' is 14:00 in London; '...T14:00+01:00' is 13:00 there."""
    local = schedule.resolve("2026-12-01T14:00", LONDON, NOW).start
    offset = schedule.resolve("2026-12-01T14:00+01:00", LONDON, NOW).start

    assert (14, LONDON) == (local.hour, local.tzinfo)
    assert 13 == offset.hour


def test_past_year_moves_to_the_next_occurrence_and_says_so():
    """An LLM's stale year: 2024-06-01 asked on 22 Nov 2026 becomes 1 June 2027; 2025-12-01 becomes 1 Dec 2026."""
    june = schedule.resolve("2024-06-01T14:00", LONDON, NOW)
    december = schedule.resolve("2025-12-01T14:00", LONDON, NOW)

    assert datetime(2027, 6, 1, 14, 0, tzinfo=LONDON) == june.start
    assert datetime(2024, 6, 1, 14, 0, tzinfo=LONDON) == june.corrected_from
    assert datetime(2026, 12, 1, 14, 0, tzinfo=LONDON) == december.start
    assert "Tuesday 1 June 2027" == schedule.format_long_day(june.start)


def test_29_february_moves_to_the_next_leap_year():
    """2024-02-29 asked in Nov 2026 becomes 29 Feb 2028."""
    assert datetime(2028, 2, 29, 10, 0, tzinfo=LONDON) == schedule.resolve("2024-02-29T10:00", LONDON, NOW).start


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("2026-11-22T08:00", "today has already passed"), ("2026-03-02T10:00", "in the past"), ("soon", "ISO 8601")],
)
def test_past_times_this_year_are_invalid_not_guessed(raw, reason):
    """Earlier today or earlier this year is INVALID_TIME with the reason; only a past year is corrected."""
    with pytest.raises(ToolError) as err:
        schedule.resolve(raw, LONDON, NOW)
    assert "INVALID_TIME" == err.value.code
    assert reason in str(err.value)


def test_business_hours_refuse_weekends_and_overruns():
    """Mon-Fri 09:00-17:00: Saturday, 08:30 and 16:45+30 min are INVALID_TIME; 16:30+30 min fits."""
    monday = datetime(2026, 11, 23, 16, 30, tzinfo=LONDON)
    HOURS.check(monday, 30, LONDON)
    for start, minutes in [
        (monday + timedelta(days=5), 30),
        (monday.replace(hour=8), 30),
        (monday.replace(minute=45), 30),
    ]:
        with pytest.raises(ToolError) as err:
            HOURS.check(start, minutes, LONDON)
        assert "Mon-Fri 09:00-17:00" in str(err.value)


def test_free_slots_skip_busy_ranges_closed_days_and_the_past():
    """From Friday 16:00 with 16:00-16:30 busy: 16:30, then Monday 09:00 and 09:30."""
    friday = datetime(2026, 11, 27, 16, 0, tzinfo=LONDON)
    busy = [(friday, friday + timedelta(minutes=30))]

    slots = schedule.free_slots(after=friday, duration_minutes=30, busy=busy, hours=HOURS, tz=LONDON, limit=3)

    assert "16:30, Mon 30 Nov 2026 09:00 and Mon 30 Nov 2026 09:30" == schedule.format_slots(slots, friday)
