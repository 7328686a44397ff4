"""Requests whose bytes are not valid text: a 4xx with its reason and every security header, never a 500
(issue 18). Sent as raw bytes, so no client library cleans them first; the console's form cases carry a
real session and CSRF token, so they reach the form's parsing."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ingest.app import create_app

ADMIN = "console-admin-token-0123456789"
#: Bytes that are not UTF-8: a lone continuation byte, an overlong lead, truncated sequences, a surrogate.
NOT_UTF8 = st.sampled_from([b"\xff", b"\x80", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80"])


@pytest.fixture
async def server(aiohttp_client, settings, broker) -> Any:
    """The app, and a signed-out console session: ``(client, cookie header, csrf token)``."""
    configured = dataclasses.replace(settings, admin_token=ADMIN, console_session_key=b"k" * 32)
    client = await aiohttp_client(create_app(configured, broker=broker))
    page = await client.get("/console/login")
    found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert found
    cookie = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
    return client, cookie.encode(), found.group(1).encode()


async def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    writer.close()
    return int(head.split(b" ", 2)[1]), head


def _request(method: str, path: str, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: x", b"Connection: close", *headers]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


FORM = b"Content-Type: application/x-www-form-urlencoded"
#: Each case: (request from (bad bytes, session cookie, csrf token), the statuses it may get).
CASES: dict[str, tuple[Callable[[bytes, bytes, bytes], bytes], set[int]]] = {
    # A cookie we could not have written is a signed-out browser: the sign-in page, or a redirect to it.
    "console cookie": (lambda bad, c, t: _request("GET", "/console/login", [b"Cookie: vapi_console=" + bad]), {200}),
    "console cookie on a page": (
        lambda bad, c, t: _request("GET", "/console/", [b"Cookie: vapi_console=a" + bad]),
        {302},
    ),
    "csrf header": (
        lambda bad, c, t: _request("POST", "/console/login", [b"Cookie: " + c, b"X-CSRF-Token: " + bad, FORM]),
        {403},
    ),
    "form token": (
        lambda bad, c, t: _request("POST", "/console/login", [b"Cookie: " + c, FORM], b"token=" + bad + b"&csrf=" + t),
        {400, 401},
    ),
    "form csrf": (
        lambda bad, c, t: _request("POST", "/console/login", [b"Cookie: " + c, FORM], b"token=x&csrf=" + bad),
        {400, 403},
    ),
    "unknown charset": (
        lambda bad, c, t: _request(
            "POST", "/console/login", [b"Cookie: " + c, FORM + b"; charset=foo"], b"token=" + bad + b"&csrf=" + t
        ),
        {400, 415},
    ),
    "multipart without boundary": (
        lambda bad, c, t: _request(
            "POST", "/console/login", [b"Cookie: " + c, b"Content-Type: multipart/form-data"], b"--x\r\n\r\n" + bad
        ),
        {400, 403, 415},
    ),
    "admin authorization": (
        lambda bad, c, t: _request("GET", "/api/webhook-metrics/queue-health", [b"Authorization: Bearer " + bad]),
        {401},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@given(bad=NOT_UTF8)
@hsettings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_bytes_that_are_not_text_get_a_4xx_with_the_security_headers(server, case, bad):
    """Each input class, with every kind of invalid UTF-8: the expected 4xx (never a 500), and on the console
    the security headers."""
    client, cookie, csrf = server
    build, expected = CASES[case]
    request = build(bad, cookie, csrf)

    status, head = await _raw(client.server.port, request)

    assert status in expected, head
    if b" /console/" in request.split(b"\r\n", 1)[0]:
        assert b"Content-Security-Policy" in head, head
