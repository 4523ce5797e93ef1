"""Outgoing gRPC: long-lived channels whose calls carry a deadline, the caller's token and the
request id, without each call site having to remember them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc

from libs import call_context, deadlines, metrics, sql_counting, tracing

# gRPC's default 4 MiB receive limit is below what the contract's representations reach: a
# course embeds every lesson (content up to 100,000 characters, 400 kB as UTF-8), so eleven
# long lessons made the course, its owner's list and every student's course list unreadable.
# The senders are our own services; this bounds a reply's size without cutting legal data short.
MAX_RECEIVE_MESSAGE_BYTES = 256 * 1024 * 1024
# Field errors travel as a BadRequest in the status trailer; a bulk request of 500 lessons can
# name each one, past the default 16 KiB hard metadata limit (a 400 turned into a 429).
MAX_METADATA_BYTES = 1024 * 1024

# Keepalive: a peer that vanished without closing the connection (a node lost, a partition)
# is noticed within about KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS, idle channels included,
# so its subchannel leaves the round-robin before it eats a call's whole deadline. Servers accept
# pings this often (libs/grpc_server.py SERVER_OPTIONS); grpc servers otherwise GOAWAY clients that
# ping more often than every 5 minutes without data ("too_many_pings").
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 5_000
MAX_RECONNECT_BACKOFF_MS = 5_000

# The RPCs that only read, so a retry on UNAVAILABLE (the replica died or is stopping before it
# answered) cannot apply anything twice. Rule: Get*/List* methods, the health check, and
# identity's VerifyToken (a signature check). Writes are never retried automatically: a write
# that reached a dying replica may have committed. tests/test_libs_grpc_client.py checks this
# list against the protos, so a new RPC has to be placed on one side or the other.
READ_ONLY_RPCS: dict[str, frozenset[str]] = {
    "courseplatform.identity.v1.IdentityService": frozenset(
        {"GetUser", "GetJwks", "VerifyToken", "ListUsers", "VerifyRefreshToken"}
    ),
    "courseplatform.catalog.v1.CatalogService": frozenset(
        {
            "GetCourse",
            "ListCourses",
            "GetCourseForEnrollment",
            "GetLesson",
            "ListLessons",
            "GetOwnCourse",
        }
    ),
    "courseplatform.learning.v1.LearningService": frozenset(
        {
            "GetEnrollment",
            "ListEnrollments",
            "GetProgress",
            "ListProgress",
            "ListEnrolledCourseIds",
            "ListCourseEnrollments",
            "GetCourseStats",
        }
    ),
    "grpc.health.v1.Health": frozenset({"Check"}),
}

# Retries share the call's deadline; throttling stops retrying while most calls fail (an
# outage of every replica), so retries never multiply the load on a struggling service.
RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config() -> dict[str, Any]:
    """The gRPC service config of every client channel.

    round_robin: a target that resolves to several addresses (`ipv4:a:p,b:p`, or `dns:///name:port`
    of a headless Service) gets calls spread over all of them; gRPC's default, pick_first, sends
    everything to one. healthCheckConfig: each subchannel watches the replica's grpc.health.v1
    status (overall, service ""), so a replica that reports NOT_SERVING (draining after SIGTERM,
    or unhealthy) gets no new picks while it is still connected.
    """
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": ""},
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, methods in sorted(READ_ONLY_RPCS.items())
                    for method in sorted(methods)
                ],
                "retryPolicy": RETRY_POLICY,
            }
        ],
        "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
    }


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
            # Never longer than the request being served has left (libs/deadlines.py).
            timeout=deadlines.call_timeout(self._timeout if timeout is None else timeout),
            metadata=metadata,
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def open_channel(
    target: str, default_timeout_s: float, *, count_sql_statements: bool = False
) -> grpc.aio.Channel:
    """A channel to `target`: any gRPC target URI, e.g. `host:port`, `dns:///catalog:50052`,
    `ipv4:127.0.0.1:50052,127.0.0.1:50062`; balanced and retried as `service_config` says."""
    interceptors: list[grpc.aio.ClientInterceptor] = [ForwardCallContext(default_timeout_s)]
    if metrics.enabled():  # outermost: one observation per call, retries included
        interceptors.insert(0, metrics.ClientMetricsInterceptor(target))
    if tracing.enabled():  # a client span per call, its traceparent in the metadata
        interceptors[0:0] = tracing.client_interceptors()
    if count_sql_statements:  # bench diagnostics (SQL_STATEMENT_COUNTING)
        interceptors.append(sql_counting.DownstreamCountingInterceptor())
    return grpc.aio.insecure_channel(
        target,
        interceptors=interceptors,
        options=[
            ("grpc.service_config", json.dumps(service_config())),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            # Any unanswered ping (flow control's BDP pings too, which keepalive waits behind)
            # gets the same timeout; gRPC's default for those is a minute.
            ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # A replica that restarts on the same address is back in the rotation within
            # seconds; gRPC's default reconnect backoff grows to two minutes.
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
            ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
        ],
    )
