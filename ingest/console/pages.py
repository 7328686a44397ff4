"""The console's pages: overview, dead letters grouped by error, one delivery."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from db import call_backs, deliveries, discards, job_runs, reports, throughput
from db import dead_letters as dead_letters_db
from db import orgs as orgs_db
from db import reveals as reveals_db
from db import search as search_db
from db.filters import DeliveryFilter
from db.statuses import REPLAYABLE
from ingest.appkeys import BROKER, DB_POOL, PROCESSING, SETTINGS
from ingest.callers import accessor, caller, session
from ingest.console.chart import line_chart
from ingest.console.render import render
from ingest.console.urls import PREFIX, path_id
from workers.broker import queue_stats
from workers.encryption import encrypted_paths, open_each
from workers.messages import TOOL_TYPES, Envelope, tool_call_key
from workers.parsing import stored
from workers.replay import REFUSED_TOOL_CALLS, replay


async def overview(request: web.Request) -> web.Response:
    """The backlog by status (every status but ``completed``, which the chart shows per minute), oldest
    pending age, received and completed per minute over the last hour, tool-call outcomes; for the admin
    also the queues, worker heartbeats and the scheduler's last runs. Every read is bounded by an index:
    none grows with the size of the log."""
    admin = caller(request).org_id is None
    async with session(request) as conn:
        counts = await deliveries.count_by_status(conn, completed=False)
        oldest_s = await deliveries.oldest_pending_age_s(conn)
        minutes = await throughput.per_minute(conn)
        tools = await throughput.tool_outcomes(conn)
        runs = await job_runs.last_runs(conn) if admin else {}
    broker = request.config_dict[BROKER]
    queue = await queue_stats(broker) if admin else None
    context = {
        # Dramatiq's Redis broker counts a worker dead after this long without a heartbeat (default 60 s).
        "heartbeat_timeout_s": getattr(broker, "heartbeat_timeout", 60_000) / 1000,
        "counts": counts,
        "oldest_s": oldest_s,
        "chart": line_chart(minutes, ("received", "completed")),
        "window_minutes": throughput.WINDOW_MINUTES,
        "tools": tools,
        "runs": runs,
        "queue": queue,
    }
    return await render(request, "overview.html", context)


#: Dead letters of one group per page.
GROUP_PAGE = 50


async def dead_letters(request: web.Request) -> web.Response:
    """Dead letters grouped by error fingerprint; ``?group=`` lists one group's members, newest first, a page at
    a time (``&before=`` the last row's ``<received_at>_<id>``, as the page's "Older" link gives it)."""
    group = request.query.get("group")
    before = _keyset(request.query.get("before"))
    async with session(request) as conn:
        groups = await dead_letters_db.dead_letter_groups(conn)
        members = (
            await dead_letters_db.dead_letters_in_group(conn, group, before=before, limit=GROUP_PAGE) if group else []
        )
        clinics = await orgs_db.clinics_by_id(conn, {m["org_id"] for m in members})
    chosen = next((g for g in groups if g["group"] == group), None)
    older = f"{members[-1]['received_at'].isoformat()}_{members[-1]['id']}" if len(members) == GROUP_PAGE else None
    return await render(
        request,
        "dead_letters.html",
        {"groups": groups, "chosen": chosen, "members": members, "older": older, "clinics": clinics},
    )


def _keyset(value: str | None) -> tuple[datetime, uuid.UUID] | None:
    """``<received_at>_<id>`` as :func:`dead_letters` writes it.

    Raises:
        web.HTTPBadRequest: it is not that shape.
    """
    if not value:
        return None
    when, _, row_id = value.rpartition("_")
    try:
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            raise ValueError("no time zone")
        return parsed, uuid.UUID(row_id)
    except (ValueError, OverflowError):
        raise web.HTTPBadRequest(text="before must be <received_at>_<id>, as the page's Older link gives it") from None


async def delivery(request: web.Request) -> web.Response:
    """One delivery: status, attempts with every error, timestamps, who opened its payload; the payload
    itself stays closed (it may hold patient data) until :func:`reveal_payload`."""
    return await _delivery_page(request, reveal=False)


async def reveal_payload(request: web.Request) -> web.Response:
    """POST: the delivery page with its payload open, recorded in ``reveals`` (who, when) first."""
    return await _delivery_page(request, reveal=True)


async def _delivery_page(request: web.Request, *, reveal: bool) -> web.Response:
    delivery_id = path_id(request, "delivery")
    async with session(request) as conn:
        row = await reports.get_delivery(conn, delivery_id)
        if row is None:
            # Another org's delivery looks exactly like one that does not exist.
            return await render(request, "not_found.html", {"what": "delivery"}, status=404)
        who = accessor(request, caller(request), "console")
        if reveal:
            await reveals_db.record_delivery(conn, who, delivery_id, "payload")
        elif row["status"] == "missed":
            # The call-back section shows the caller's number and what they asked for.
            await reveals_db.record_delivery(conn, who, delivery_id, "caller")
        called_back = await call_backs.call_back_of(conn, delivery_id)
        discarded = await discards.discard_of(conn, delivery_id)
        reveals = await reveals_db.of_delivery(conn, delivery_id)
        clinic = (await orgs_db.clinics_by_id(conn, {row["org_id"]}))[row["org_id"]]
    message = stored(row["payload"], row["event_type"])  # read once for the caller and the encrypted arguments
    context = {
        "d": row,
        "clinic": clinic,
        "called_back": called_back,
        "discarded": discarded,
        "reveals": reveals,
        "revealed": reveal,
        "replayable": row["status"] in REPLAYABLE and row["answer_by"] is None,
        "refused_reason": REFUSED_TOOL_CALLS if row["answer_by"] is not None else None,
        "notice": request.query.get("done"),
        **_encrypted(request, message, revealed=reveal),
    }
    return await render(request, "delivery.html", {**context, **_caller(message)})


def _encrypted(request: web.Request, message: Envelope, *, revealed: bool) -> dict[str, Any]:
    """Which tool arguments Vapi encrypted (``encrypted``: paths by tool), and, only on the recorded reveal,
    what they say (``decrypted``: ``(tool, path, plaintext or None, why not)``)."""
    if message.type not in TOOL_TYPES:
        return {"encrypted": [], "decrypted": []}
    invocations = message.tool_invocations()
    keyring = request.config_dict[PROCESSING].keyring
    try:
        encrypted = [(i.name, paths) for i in invocations if (paths := encrypted_paths(i.arguments))]
        decrypted = [(i.name, *o) for i in invocations for o in open_each(i.arguments, keyring)] if revealed else []
    except RecursionError:  # arguments nested past Python's limit: the page shows the payload, not a 500
        return {"encrypted": [], "decrypted": []}
    return {"encrypted": encrypted, "decrypted": decrypted}


def _caller(message: Envelope) -> dict[str, Any]:
    """The caller's number and what they asked for (the first tool call as sent), from a payload of any shape."""
    invocations = message.tool_invocations()
    return {"caller_number": message.customer_number, "asked": invocations[0].item if invocations else None}


async def missed(request: web.Request) -> web.Response:
    """Missed tool calls: callers the assistant could not serve, to be called back (their numbers: recorded
    in ``reveals``, one row per clinic shown)."""
    async with session(request) as conn:
        rows = await call_backs.missed_calls(conn)
        clinics = await orgs_db.clinics_by_id(conn, {r["org_id"] for r in rows})
        await reveals_db.record_listing(
            conn, accessor(request, caller(request), "console"), clinics, "missed-call list"
        )
    return await render(request, "missed.html", {"rows": rows, "clinics": clinics})


async def call_back(request: web.Request) -> web.Response:
    """Record that a missed caller was called back (who, when, an optional note)."""
    delivery_id = path_id(request, "delivery")
    note = str((await request.post()).get("note", "")).strip()[:500] or None
    async with session(request) as conn:
        await call_backs.call_back(conn, delivery_id, called_by=caller(request).recorded_as, note=note)
    raise web.HTTPFound(f"{PREFIX}/deliveries/{delivery_id}")


async def replay_one(request: web.Request) -> web.Response:
    """POST: replay this failed or dead-lettered delivery now (a fresh attempt budget), as ``retry`` does in
    the admin API; then back to its page. A synchronous tool call is refused (409): its caller has gone."""
    delivery_id = path_id(request, "delivery")
    async with session(request) as conn:
        row = await reports.get_delivery(conn, delivery_id)
    if row is None:
        return await render(request, "not_found.html", {"what": "delivery"}, status=404)
    if row["answer_by"] is not None:
        raise web.HTTPConflict(text=REFUSED_TOOL_CALLS)
    replayed = await replay(
        request.config_dict[DB_POOL],
        request.config_dict[BROKER],
        DeliveryFilter(ids=(delivery_id,), statuses=tuple(REPLAYABLE)),
        budget=request.config_dict[SETTINGS].retry_max_attempts,
        org_scope=caller(request).org_id,
    )
    # Not replayable (completed meanwhile, replayed by someone else): the page says where it stands.
    raise web.HTTPFound(f"{PREFIX}/deliveries/{delivery_id}?done={'replayed' if replayed else 'not-replayed'}")


async def discard(request: web.Request) -> web.Response:
    """POST ``reason`` (required, at most 500 characters): discard this dead letter so that it never runs,
    recording who and why; then back to its page. 400 without a reason."""
    delivery_id = path_id(request, "delivery")
    reason = str((await request.post()).get("reason", "")).strip()
    if not reason or len(reason) > 500:
        raise web.HTTPBadRequest(text="say why this dead letter must not run (1 to 500 characters)")
    async with session(request) as conn:
        done = await discards.discard(conn, delivery_id, discarded_by=caller(request).recorded_as, reason=reason)
    raise web.HTTPFound(f"{PREFIX}/deliveries/{delivery_id}?done={'discarded' if done else 'not-discarded'}")


async def search(request: web.Request) -> web.Response:
    """``?q=``: a call id, tool-call id, delivery id (or 8+ hex prefix), phone number, assistant or number id."""
    q = request.query.get("q", "")[:200]
    async with session(request) as conn:
        found = await search_db.search(conn, q, tool_call_key=tool_call_key(q.strip())) if q.strip() else None
        shown = [*found["deliveries"], *found["calls"], *found["appointments"]] if found else []
        clinics = await orgs_db.clinics_by_id(conn, {r["org_id"] for r in shown if r.get("org_id")})
        # Calls show their caller's number, appointments the patient's name and phone.
        patients = {r["org_id"] for r in [*found["calls"], *found["appointments"]]} if found else set()
        await reveals_db.record_listing(conn, accessor(request, caller(request), "console"), patients, "search")
    if found and len(found["deliveries"]) == 1 and not any(found[k] for k in ("calls", "appointments", "routes")):
        raise web.HTTPFound(f"{PREFIX}/deliveries/{found['deliveries'][0]['id']}")
    return await render(request, "search.html", {"q": q, "found": found, "clinics": clinics})
