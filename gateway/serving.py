"""How uvicorn serves the gateway: no `server` banner, and malformed HTTP answered with the
contract's error body (and the security headers) instead of uvicorn's plain text.

uvicorn (httptools) answers a request its parser rejects itself, before any ASGI app runs:
`send_400_response` is the one place it does so, and this subclass replaces only that. What
it cannot cover: a connection closed before a full request line arrives gets no answer at all,
and a failure inside uvicorn after the app has answered is logged, not sent.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.errors import error_body
from gateway.security import security_policy

MALFORMED_HTTP = "Malformed HTTP request."


def _malformed_http_answer() -> bytes:
    """Everything after the status line: headers, blank line, JSON body."""
    body = orjson.dumps(error_body(MALFORMED_HTTP))
    headers = [
        *security_policy().headers.items(),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "close"),
    ]
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers) + (
        b"\r\n" + body
    )


_MALFORMED_HTTP_ANSWER = _malformed_http_answer()


class ContractHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        self.transport.write(b"".join(head) + _MALFORMED_HTTP_ANSWER)
        self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """uvicorn settings of the gateway, for `python -m gateway` and the tests alike."""
    return {
        "http": "gateway.serving:ContractHttpToolsProtocol",
        "server_header": False,
        # X-Forwarded-For is read by gateway/client.py, from TRUSTED_PROXIES only; uvicorn's
        # default would believe it from 127.0.0.1 and rewrite the client address first.
        "proxy_headers": False,
    }
