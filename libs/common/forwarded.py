"""The client address of a request: the TCP peer, or what trusted proxies say it was.

``TRUSTED_PROXIES`` lists the networks whose forwarding headers are believed (empty, the default:
nobody's, and the TCP peer is the client). The walk is nginx's ``real_ip_recursive on`` — the
"rightmost untrusted address" of X-Forwarded-For:

* start at the TCP peer; while the current hop is trusted, step one entry to the left in the
  forwarded chain; the first untrusted address is the client; if every hop is trusted, the
  leftmost one;
* a peer that is not trusted is the client and its headers are ignored, so a client that
  connects directly cannot choose its address;
* an entry that is not an address (``unknown``, an obfuscated ``_id``, a host name, garbage)
  where one is needed stops the walk at the last good hop: garbage is never believed, and never
  an error. Ports, IPv6 brackets and quotes are stripped (``"[2001:db8::1]:4711"``);
  IPv4-mapped IPv6 (``::ffff:10.1.2.3``, what a dual-stack socket reports) counts as IPv4;
* at most ``MAX_HOPS`` entries from the right are looked at, so a huge header costs nothing.

Which header: X-Forwarded-For when the request has one, else RFC 7239 ``Forwarded: for=``
(several lines of either are one list, in order). X-Forwarded-For comes first on purpose:
ingress-nginx, the shipped Ingress, always sets X-Forwarded-For and passes a client's own
``Forwarded`` header through untouched, so "Forwarded first" would let anyone behind it choose
their address with one header. A proxy that writes only ``Forwarded`` works as long as its
clients' X-Forwarded-For does not reach us (such a proxy must drop it; docs/deploy.md).

Why not aiohttp-remotes (aio-libs): ``XForwardedStrict`` takes one set of trusted addresses per
hop, in order, and answers 400 when the peer is not trusted or the chain has another length — a
direct client (empty list = trust nobody) or one hop more or less is refused rather than served
with its TCP address. It also 400s on a second X-Forwarded-For line, lets ``ip_address`` errors on
garbage escape as 500s, and rewrites ``scheme``/``host`` from client headers as well;
``XForwardedRelaxed`` believes the leftmost entry from anyone. None of that is the walk above, so
it is the few dozen lines below instead.

The middleware (``client_address_middleware`` in ``libs/common/web.py``) applies the result with
``request.clone(remote=client)``: every handler — and python-engineio, which hands the request to
python-socketio as ``environ["aiohttp.request"]`` — reads the client as ``request.remote``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

#: Forwarded entries looked at, counted from the right (the proxies' end).
MAX_HOPS = 32


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``192.168.1.5``, ``fd00::/8`` as networks (host bits allowed); ValueError otherwise."""
    networks = []
    for entry in entries:
        try:
            networks.append(ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"must list IP addresses or CIDRs like 10.0.0.0/8 (got {entry[:80]!r})") from None
    return tuple(networks)


def parse_node(text: str) -> Address | None:
    """The address in one forwarded entry or peer name, without port, brackets or quotes; else None."""
    value = text.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].strip()
    if value.startswith("["):  # "[2001:db8::1]" or "[2001:db8::1]:4711"
        close = value.find("]")
        if close < 0 or value[close + 1 : close + 2] not in ("", ":"):
            return None
        value = value[1:close]
    elif value.count(":") == 1:  # "192.0.2.1:4711"; bare IPv6 has two colons or more
        value = value.partition(":")[0]
    try:
        address = ip_address(value)
    except ValueError:  # "unknown", "_hidden", a host name, garbage
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _rightmost(lines: Sequence[str], separator: str = ",") -> list[str]:
    """The last ``MAX_HOPS`` comma-separated entries of ``lines`` taken as one list, leftmost first."""
    entries: list[str] = []
    for line in reversed(lines):
        wanted = MAX_HOPS - len(entries)
        parts = line.rsplit(separator, wanted)
        if len(parts) > wanted:  # parts[0] is the unsplit rest: past the cap
            entries[:0] = parts[1:]
            break
        entries[:0] = parts
    return entries


def _forwarded_for(element: str) -> str:
    """The ``for=`` value of one RFC 7239 element (``""`` when it has none: not an address)."""
    for pair in element.split(";"):
        name, _, value = pair.partition("=")
        if name.strip().lower() == "for":
            return value
    return ""


def forwarded_chain(headers: Mapping[str, Any]) -> list[str]:
    """The forwarded addresses of a request as written, leftmost (the original client) first."""
    getall = getattr(headers, "getall", None)
    if getall is None:  # a plain dict (tests): one line per header
        xff = [headers["X-Forwarded-For"]] if "X-Forwarded-For" in headers else []
        forwarded = [headers["Forwarded"]] if "Forwarded" in headers else []
    else:
        xff, forwarded = getall("X-Forwarded-For", []), getall("Forwarded", [])
    if xff:
        return _rightmost(xff)
    return [_forwarded_for(element) for element in _rightmost(forwarded)]


def is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def client_address(peer: str | None, headers: Mapping[str, Any], trusted: Sequence[Network]) -> str | None:
    """The client of a request whose TCP peer is ``peer`` (see the module docstring)."""
    if not trusted or not peer:
        return peer
    current = parse_node(peer)
    if current is None or not is_trusted(current, trusted):
        return peer
    stepped = False
    for entry in reversed(forwarded_chain(headers)):
        hop = parse_node(entry)
        if hop is None:  # malformed where an address is needed: the last good hop it is
            break
        current, stepped = hop, True
        if not is_trusted(hop, trusted):
            break
    return str(current) if stepped else peer
