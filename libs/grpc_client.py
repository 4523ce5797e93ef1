"""Outgoing gRPC: long-lived channels whose calls carry a deadline, the caller's token and the
request id, without each call site having to remember them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from libs import call_context, sql_counting

# gRPC's default 4 MiB receive limit is below what the contract's representations reach: a
# course embeds every lesson (content up to 100,000 characters, 400 kB as UTF-8), so eleven
# long lessons made the course, its owner's list and every student's course list unreadable.
# The senders are our own services; this bounds a reply's size without cutting legal data short.
MAX_RECEIVE_MESSAGE_BYTES = 256 * 1024 * 1024
# Field errors travel as a BadRequest in the status trailer; a bulk request of 500 lessons can
# name each one, past the default 16 KiB hard metadata limit (a 400 turned into a 429).
MAX_METADATA_BYTES = 1024 * 1024


class ForwardCallContext(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, default_timeout_s: float) -> None:
        self._timeout = default_timeout_s

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        request_id = call_context.request_id.get()
        # `get(...) is None` rather than `not in`: grpc-stubs type `in` as a search among
        # (key, value) pairs, while at run time both test the keys.
        if request_id and metadata.get(call_context.REQUEST_ID_HEADER) is None:
            metadata.add(call_context.REQUEST_ID_HEADER, request_id)
        token = call_context.access_token.get()
        if token and metadata.get(call_context.AUTHORIZATION_HEADER) is None:
            metadata.add(call_context.AUTHORIZATION_HEADER, f"Bearer {token}")
        timeout = client_call_details.timeout
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=self._timeout if timeout is None else timeout,
            metadata=metadata,
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def open_channel(
    target: str, default_timeout_s: float, *, count_sql_statements: bool = False
) -> grpc.aio.Channel:
    interceptors: list[grpc.aio.ClientInterceptor] = [ForwardCallContext(default_timeout_s)]
    if count_sql_statements:  # bench diagnostics (SQL_STATEMENT_COUNTING)
        interceptors.append(sql_counting.DownstreamCountingInterceptor())
    return grpc.aio.insecure_channel(
        target,
        interceptors=interceptors,
        options=[
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
        ],
    )
