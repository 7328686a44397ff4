"""Hostile query strings and ids against the real web process's console, signed in as the admin.

Properties: never a 5xx, and (the ``web_process`` fixture checks) no unhandled exception in the log.
"""

from __future__ import annotations

import http.client
import re
from urllib.parse import quote, urlencode

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import ADMIN, FUZZ, any_text

PAGES = [
    "/console/",
    "/console/dead-letters",
    "/console/dead-letters/replay",
    "/console/search",
    "/console/missed",
    "/console/appointments",
    "/console/replays",
    "/console/clinics",
    "/console/quarantine",
]
#: Pages with an id in the path.
ID_PAGES = ["/console/deliveries/{}", "/console/clinics/{}", "/console/replays/{}"]
values = (
    any_text
    | st.dates().map(str)
    | st.sampled_from(["9999-12-31", "0001-01-01", "2026-02-30", "1", "00000000-0000-0000-0000-000000000000", "%"])
    | st.uuids().map(str)
)


def _request(port: int, method: str, path: str, cookie: str = "", body: str = "") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    conn.request(method, path, body=body.encode(), headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp


def _sign_in(port: int) -> str:
    """The admin's session cookie (``name=value``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/console/login")
    resp = conn.getresponse()
    page = resp.read().decode()
    cookie = (resp.getheader("Set-Cookie") or "").split(";")[0]
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found and cookie, page
    signed = _request(port, "POST", "/console/login", cookie, urlencode({"token": ADMIN, "csrf": found.group(1)}))
    assert 302 == signed.status
    return (signed.getheader("Set-Cookie") or cookie).split(";")[0]


def test_console_pages_never_5xx_on_any_query_or_id(web_process):
    """Every GET page with any of its query parameters set to anything, and any id in the path: < 500."""
    env, _ = web_process
    port = int(env["PORT"])
    cookie = _sign_in(port)

    @FUZZ
    @given(
        path=st.sampled_from(PAGES),
        params=st.dictionaries(st.sampled_from(["q", "week", "org", "cancelled", "group", "rate"]), values, max_size=4),
        page_id=values,
        id_page=st.sampled_from(ID_PAGES),
    )
    def check(path: str, params: dict[str, str], page_id: str, id_page: str) -> None:
        query = urlencode(params, errors="surrogatepass")
        with_query = _request(port, "GET", f"{path}?{query}", cookie)
        with_id = _request(port, "GET", id_page.format(quote(page_id, safe="", errors="surrogatepass")), cookie)
        assert with_query.status < 500, (path, params, with_query.status)
        assert with_id.status < 500, (id_page, page_id, with_id.status)
        assert not (with_query.getheader("Location") or "").endswith("/login"), "the session was lost"

    check()


#: Every console form that changes something (sign-out aside), with the fields it reads.
FORMS = {
    "/console/replays": ["group", "rate"],
    "/console/clinics": ["name", "timezone", "region"],
    "/console/clinics/{}": ["name", "timezone", "region", "assistant_id", "hours_mon", "hours_sat"],
    "/console/clinics/{}/revoke": ["token_id"],
    "/console/quarantine/route": ["assistant_id", "phone_number_id", "org_id"],
    "/console/deliveries/{}/called-back": ["note"],
    "/console/deliveries/{}/payload": [],
    "/console/replays/{}/cancel": [],
}


def test_console_forms_never_5xx_on_any_field(web_process):
    """Every form, with the session's CSRF token, any value in each field and any id in the path: < 500."""
    env, _ = web_process
    port = int(env["PORT"])
    cookie = _sign_in(port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/console/", headers={"Cookie": cookie})
    found = re.search(r'name="csrf" value="([^"]+)"', conn.getresponse().read().decode())
    assert found
    csrf = found.group(1)

    @FUZZ
    @given(form=st.sampled_from(sorted(FORMS)), data=st.data(), path_id=values)
    def check(form: str, data: st.DataObject, path_id: str) -> None:
        fields = data.draw(st.fixed_dictionaries({}, optional=dict.fromkeys(FORMS[form], values)))
        body = urlencode({**fields, "csrf": csrf}, errors="surrogatepass")
        path = form.format(quote(path_id, safe="", errors="surrogatepass"))
        answer = _request(port, "POST", path, cookie, body)
        assert answer.status < 500, (path, fields, answer.status)
        assert answer.status != 403, "the CSRF token was refused"

    check()
