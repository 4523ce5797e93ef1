"""Who the client is, by network address, for login throttling.

The gateway decides it (the connection's address, or `X-Forwarded-For` when the connection comes
from one of `TRUSTED_PROXIES`) and sends it to identity as `x-client-address` metadata; identity
believes that metadata only from peers in `TRUSTED_GATEWAYS`, and throttles anyone else by their
own gRPC peer address (so a direct caller cannot pick an address to hide behind).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

CLIENT_ADDRESS_HEADER = "x-client-address"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    """`"10.0.0.0/8, 127.0.0.1"` -> networks; a bare address is a one-address network."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def normalise(address: str) -> str | None:
    """The canonical text of an IP address, or None when `address` is not one."""
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped  # ::ffff:1.2.3.4 is 1.2.3.4
    return str(parsed)


def is_trusted(address: str, networks: Sequence[Network]) -> bool:
    canonical = normalise(address)
    if canonical is None:
        return False
    parsed = ipaddress.ip_address(canonical)
    return any(parsed in network for network in networks)


def from_forwarded_for(peer: str, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """The client's address behind trusted proxies.

    Read right to left: each trusted proxy appended the address it saw, so the right-most entry
    that is not a trusted proxy is the client. Entries further left were written by the client
    itself and are ignored. An untrusted peer's header is ignored altogether.
    """
    peer = normalise(peer) or peer
    if not is_trusted(peer, proxies):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        canonical = normalise(hop)
        if canonical is None:
            break  # garbage where a proxy should have written an address: stop at the last good
        client = canonical
        if not is_trusted(canonical, proxies):
            break
    return client


def from_grpc_peer(peer: str) -> str:
    """The address part of a grpc.aio peer string (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] if rest.startswith("[") else rest
        return normalise(host.strip("[]")) or host
    return peer  # unix sockets and the like: the peer string itself names the caller


def from_metadata(peer: str, claimed: str | None, gateways: Sequence[Network]) -> str:
    """Identity's view: the gateway's `x-client-address` if the peer is a trusted gateway and the
    value is an address, else the peer's own address."""
    own = from_grpc_peer(peer)
    if claimed and is_trusted(own, gateways) and (canonical := normalise(claimed)):
        return canonical
    return own
