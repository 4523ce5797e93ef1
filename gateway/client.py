"""The client's network address as the gateway sees it (login throttling in identity).

The connection's peer, or, when that peer is one of `TRUSTED_PROXIES`, the right-most
`X-Forwarded-For` entry that is not a trusted proxy (libs/client_address.py). uvicorn's own
proxy-header rewriting is off (gateway/serving.py), so this is the only place deciding it.
"""

from __future__ import annotations

from functools import lru_cache

from fastapi import Request

from libs.client_address import CLIENT_ADDRESS_HEADER, Network, from_forwarded_for, parse_networks


@lru_cache(maxsize=8)
def _proxies(spec: str) -> tuple[Network, ...]:
    return parse_networks(spec)


def client_address(request: Request) -> str:
    peer = request.client.host if request.client else ""
    proxies = _proxies(request.app.state.settings.trusted_proxies)
    return from_forwarded_for(peer, request.headers.getlist("x-forwarded-for"), proxies)


def client_address_metadata(request: Request) -> tuple[tuple[str, str], ...]:
    """gRPC metadata telling identity who the client is."""
    return ((CLIENT_ADDRESS_HEADER, client_address(request)),)
