"""Console replays: a dry run with the count, a confirm that records the group's members, live progress, cancel.

The run itself is :mod:`workers.replay_runs`, in the background of whichever
web process holds the replay's lease, on the replay queue behind live traffic.
"""

from __future__ import annotations

from aiohttp import web

from db import dead_letters, replays
from ingest.appkeys import REPLAY_WAKE
from ingest.callers import caller, session
from ingest.console.render import render
from ingest.console.urls import PREFIX, path_id
from workers.replay import REFUSED_TOOL_CALLS

#: Rates an operator may choose (deliveries per second); None: as fast as the workers take them.
RATES = (None, 10.0, 50.0, 200.0)


async def confirm(request: web.Request) -> web.Response:
    """The dry run: how many of a dead-letter group would be replayed, what would not and why; a confirm form."""
    group = request.query.get("group", "")
    async with session(request) as conn:
        matched, refused, fingerprint = await dead_letters.group_summary(conn, group)
    if fingerprint is None:
        raise web.HTTPFound(f"{PREFIX}/dead-letters")
    return await render(
        request,
        "replay_confirm.html",
        {
            "group": group,
            "fingerprint": fingerprint,
            "matched": matched,
            "refused": refused,
            "refused_reason": REFUSED_TOOL_CALLS,
            "rates": RATES,
        },
    )


async def start(request: web.Request) -> web.Response:
    """Record the group's members as they are now and who asked, start the run; then show its progress."""
    form = await request.post()
    group = str(form.get("group", ""))
    rate_text = str(form.get("rate", ""))
    try:
        rate = float(rate_text) if rate_text else None
    except ValueError:
        raise web.HTTPBadRequest(text="rate must be a number of deliveries per second") from None
    if rate is not None and rate not in RATES:
        raise web.HTTPBadRequest(text=f"rate must be one of {', '.join(str(r) for r in RATES if r)}")
    async with session(request) as conn:
        matched, refused, fingerprint = await dead_letters.group_summary(conn, group)
        if fingerprint is None or not matched:
            raise web.HTTPFound(f"{PREFIX}/dead-letters")
        replay_id, _ = await replays.create_for_group(
            conn,
            org_id=caller(request).org_id,
            requested_by=caller(request).recorded_as,
            description=f"dead letters: {fingerprint}",
            group=group,
            refused=refused,
            rate_per_s=rate,
        )
    request.config_dict[REPLAY_WAKE].set()
    raise web.HTTPFound(f"{PREFIX}/replays/{replay_id}")


async def list_page(request: web.Request) -> web.Response:
    """Every replay, newest first: who, when, what, how far."""
    async with session(request) as conn:
        rows = await replays.list_replays(conn)
    return await render(request, "replays.html", {"replays": rows})


async def show(request: web.Request) -> web.Response:
    """One replay's progress (the page polls itself with htmx while it runs)."""
    async with session(request) as conn:
        row = await replays.get(conn, path_id(request, "replay"))
    if row is None:
        return await render(request, "not_found.html", {"what": "replay"}, status=404)
    return await render(request, "replay.html", {"r": row})


async def cancel(request: web.Request) -> web.Response:
    """Stop a running replay after its current batch."""
    replay_id = path_id(request, "replay")
    async with session(request) as conn:
        await replays.cancel(conn, replay_id)
    raise web.HTTPFound(f"{PREFIX}/replays/{replay_id}")
