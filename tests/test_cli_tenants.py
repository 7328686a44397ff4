"""Onboarding a clinic with the real CLI (as the README shows), id prefixes, and output for people and pipes."""

from __future__ import annotations

import json
import uuid

from tests.procs import cli, sql


def _ok(env: dict[str, str], *args: str) -> str:
    done = cli(env, *args)
    assert 0 == done.returncode, (args, done.stderr)
    return done.stdout


def test_onboarding_a_clinic_end_to_end_with_prefixes(env):
    """orgs create -> numbers add -> orgs update -> tokens create/list/revoke, each by an 8-digit prefix."""
    org_id = _ok(env, "orgs", "create", "--name", "Harbour Dental", "--timezone", "Europe/London").strip()
    prefix = org_id[:8]
    _ok(env, "numbers", "add", "--org", prefix, "--phone-number-id", "pn-harbour")
    _ok(env, "orgs", "update", prefix, "--hours", "sat=09:00-12:00", "--closed", "fri", "--assistant-id", "asst-h")
    token = _ok(env, "tokens", "create", "--org", prefix, "--name", "front desk").strip()
    shown = json.loads(_ok(env, "orgs", "show", prefix, "--json"))
    token_row = json.loads(_ok(env, "tokens", "list", "--org", prefix, "--json"))
    revoked = cli(env, "tokens", "revoke", token_row["id"][:8])
    again = cli(env, "tokens", "revoke", token_row["id"][:8])
    live_after = _ok(env, "tokens", "list", "--json")
    all_after = json.loads(_ok(env, "tokens", "list", "--all", "--json"))

    assert token.startswith("vit_") and token not in json.dumps(token_row)
    assert shown["business_hours"] == {
        "mon": ["09:00", "17:00"],
        "tue": ["09:00", "17:00"],
        "wed": ["09:00", "17:00"],
        "thu": ["09:00", "17:00"],
        "sat": ["09:00", "12:00"],
    }
    assert ("asst-h", ["asst-h"], ["pn-harbour"]) == (
        shown["vapi_assistant_id"],
        [a["vapi_id"] for a in shown["assistants"]],
        [n["vapi_id"] for n in shown["phone_numbers"]],
    )
    assert 0 == revoked.returncode and token_row["id"] in revoked.stdout
    assert 1 == again.returncode and "already revoked" in again.stderr
    assert "" == live_after and all_after["revoked_at"]
    assert sql(env, f"SELECT revoked_at IS NOT NULL FROM api_tokens WHERE id = '{token_row['id']}'")


def test_removing_a_mapping_and_listing_routes(env, org_for_env):
    """agents list shows the mapping with its org; remove takes it away once, then says it is not mapped."""
    _ok(env, "agents", "add", "--org", org_for_env, "--assistant-id", "asst-gone")
    listed = [json.loads(line) for line in _ok(env, "agents", "list", "--json").splitlines()]
    removed = cli(env, "agents", "remove", "asst-gone")
    twice = cli(env, "agents", "remove", "asst-gone")

    assert [("asst-gone", org_for_env)] == [(r["vapi_id"], r["org_id"]) for r in listed]
    assert 0 == removed.returncode and org_for_env in removed.stdout
    assert 1 == twice.returncode and "not mapped" in twice.stderr


def test_an_ambiguous_or_unknown_prefix_is_one_line(env):
    """Two orgs sharing a prefix: 'type more'; no match: 'no organization'; too short: refused."""
    shared = "abcdef01"
    for suffix in ("1", "2"):
        sql(env, f"INSERT INTO organizations (id, name) VALUES ('{shared}-0000-0000-0000-00000000000{suffix}', 'X')")

    ambiguous = cli(env, "orgs", "show", shared)
    unknown = cli(env, "orgs", "show", "fedcba98")
    short = cli(env, "orgs", "show", "abc")

    assert "more than one organization: type more" in ambiguous.stderr
    assert "no organization fedcba98" in unknown.stderr
    assert "prefix of 8 or more hex digits" in short.stderr
    assert [1, 1, 1] == [ambiguous.returncode, unknown.returncode, short.returncode]
    assert all(1 == len(d.stderr.strip().splitlines()) for d in (ambiguous, unknown, short))


def test_a_piped_list_has_whole_ids_and_says_how_many_were_left_out(env, org_for_env):
    """Off a terminal the table keeps every character of each id; --limit cuts say 'showing 2 of 3'."""
    for i in range(3):
        sql(
            env,
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status)"
            f" VALUES ('{org_for_env}', 'status-update', 'status-update:c-{i}:ringing', '{{}}', 'dead_letter')",
        )
    ids = {
        str(sql(env, f"SELECT id FROM webhook_delivery_log WHERE event_id = 'status-update:c-{i}:ringing'"))
        for i in range(3)
    }

    table = cli(env, "deliveries", "list", "--limit", "2")
    everything = cli(env, "deliveries", "list")
    quarantine = cli(env, "quarantine", "list", "--json")

    assert 2 == sum(delivery_id in table.stdout for delivery_id in ids)
    assert "showing 2 of 3 deliveries (use --limit)" == table.stderr.strip()
    assert "3 deliveries" == everything.stderr.strip()
    assert (0, "", "0 unrouted messages") == (quarantine.returncode, quarantine.stdout, quarantine.stderr.strip())
    shown = cli(env, "deliveries", "show", sorted(ids)[0][:8])
    assert sorted(ids)[0] == json.loads(shown.stdout)["id"]
    assert uuid.UUID(sorted(ids)[0])


def test_json_lists_every_match_for_a_pipe_and_a_call_filter_finds_one_call(env, org_for_env):
    """`deliveries list --json | wc -l` counts all 2,150 matches (pages of 1,000, received at the same instant
    in part, none twice), the table stays at 50, --limit still cuts JSON; --call lists that call's own."""
    sql(
        env,
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, received_at, vapi_call_id)"
        f" SELECT '{org_for_env}', 'status-update', 'status-update:c-' || i || ':ringing', '{{}}', 'dead_letter',"
        "        now() - (i / 7) * interval '1 s', 'c-' || (i % 100)"
        "   FROM generate_series(1, 2150) i",
    )

    piped = cli(env, "deliveries", "list", "--status", "dead_letter", "--json")
    table = cli(env, "deliveries", "list", "--status", "dead_letter")
    cut = cli(env, "deliveries", "list", "--json", "--limit", "3")
    one_call = cli(env, "deliveries", "list", "--call", "c-7", "--json")

    listed = [json.loads(line) for line in piped.stdout.splitlines()]
    assert (2150, 2150) == (len(listed), len({row["id"] for row in listed}))
    assert [(r["received_at"], r["id"]) for r in listed] == sorted(
        ((r["received_at"], r["id"]) for r in listed), reverse=True
    )
    assert "2150 deliveries" == piped.stderr.strip()
    assert "showing 50 of 2150 deliveries (use --limit)" == table.stderr.strip()
    assert 3 == len(cut.stdout.splitlines())
    assert 22 == len(one_call.stdout.splitlines())  # i % 100 == 7: 7, 107, ..., 2107
