"""Who is at the other end of a console request: its client's address, through trusted proxies only.

Behind a reverse proxy every request comes from the proxy's address, so a limit per address would be
one limit for everyone. A proxy names the client in a header, but so can anyone: the header is read only
when the request comes from a proxy listed in ``CONSOLE_TRUSTED_PROXIES``, and then from the right (the
hop our proxy added) leftwards, past further trusted proxies, to the first address that is not one. What
a client writes into the header itself lies to the left of that, so it cannot pick its own address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from ingest.appkeys import SETTINGS
from ingest.settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(request: web.Request) -> str:
    """The client's address as text (an IP address, or a proxy's opaque name for it such as ``unknown``).

    Reads ``X-Forwarded-For`` or RFC 7239 ``Forwarded`` (``CONSOLE_PROXY_HEADER``; one, so that a header
    the proxy passes through untouched cannot override the one it writes) only from trusted peers.
    """
    settings = request.config_dict[SETTINGS]
    peer = request.remote or "unknown"
    trusted = settings.console_trusted_proxies
    if not trusted or not _trusted(peer, trusted):
        return peer
    if settings.console_proxy_header == "forwarded":
        chain = [str(hop.get("for", "")) for hop in request.forwarded]
    else:
        chain = [part for value in request.headers.getall("X-Forwarded-For", ()) for part in value.split(",")]
    hops = [_host(hop) for hop in chain if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _host(hop: str) -> str:
    """``[2001:db8::1]:4711`` → ``2001:db8::1``, ``192.0.2.7:80`` → ``192.0.2.7``, others as they are."""
    hop = hop.strip().strip('"')
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _trusted(host: str, trusted: Sequence[Network]) -> bool:
    try:
        address: Address = ipaddress.ip_address(host)
    except ValueError:
        return False  # "unknown", "_hidden": a name for a client, not a proxy we know
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)
