"""What every console answer carries: security headers, and failures below the web layer as text answers."""

from __future__ import annotations

from aiohttp import web

from ingest.console.session import Handler
from ingest.console.urls import PREFIX
from ingest.errors import refusal_of

#: No inline scripts or styles, no framing, forms post only here.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSP without inline scripts, no framing, no sniffing, no referrer, on every console answer; a refusal
    (an admin-only page for a clinic: 403), an outage (503) or a value PostgreSQL refuses (400) is answered
    as text with its reason (:func:`ingest.errors.refusal_of`, the admin API's words)."""
    # Pages hold patient data: never cached. Static files are versioned (append_version), so they may be.
    cacheable = request.path.startswith(f"{PREFIX}/static/")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(exc, cacheable)
        raise
    except Exception as exc:
        refused = refusal_of(exc)
        if refused is None:
            raise
        response = web.Response(status=refused.status, text=refused.reason)
    _secure(response, cacheable)
    return response


def _secure(response: web.StreamResponse, cacheable: bool) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not cacheable:
        response.headers["Cache-Control"] = "no-store"
