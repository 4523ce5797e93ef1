"""Bounded concurrency with fast rejection: work past a fixed limit is refused at once.

Queues in front of a saturated server only turn an overload into long waits and then timeouts
for everyone; a refusal that costs microseconds keeps the accepted calls fast and tells the
caller to retry (Google SRE, "Handling Overload").

- `ConcurrencyLimitInterceptor`: the gRPC server's limit on calls of the service (not
  grpc.aio's `maximum_concurrent_rpcs`, which would count health checks, reflection and the
  clients' long-lived health Watch streams too, and which queues rather than rejects at the
  limit). The excess gets RESOURCE_EXHAUSTED marked OVERLOADED (libs/grpc_errors.py), and a call
  whose deadline has already passed is refused before it runs.
- `Bulkhead`: a bounded queue in front of one scarce resource (identity's argon2 threads).

Fixed limits rather than an adaptive (gradient/AIMD) one: a fixed limit is predictable, easy to
test and to reason about against the database pool it protects; see docs/overload.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import grpc

from libs import deadlines
from libs.errors import DeadlineExceeded, Overloaded
from libs.grpc_errors import abort_with

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]

# time_remaining() of a call without a deadline (grpc reports its "infinite future").
NO_DEADLINE_S = 1e9
STOP_GRACE_S = 0.1


class ConcurrencyLimitInterceptor(grpc.aio.ServerInterceptor):
    """At most `limit` calls of `service` (full proto name) at once; 0: no limit. Each admitted
    call runs with the caller's deadline in libs.deadlines, so every hop below passes it on."""

    def __init__(self, service: str, limit: int) -> None:
        self._prefix = f"/{service}/"
        self.limit = limit
        self.in_flight = 0

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        # Health and reflection (other prefixes) never wait behind, nor count against, the
        # service's own calls.
        if (
            handler is None
            or not handler.unary_unary
            or not handler_call_details.method.startswith(self._prefix)
        ):
            return handler
        # grpc-stubs type handlers for the sync server; on grpc.aio they are coroutine functions.
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(cast(Behavior, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, behavior: Behavior) -> Behavior:
        async def limited(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            left = context.time_remaining()
            if left is not None and left <= 0:
                await abort_with(context, DeadlineExceeded())
            if self.limit and self.in_flight >= self.limit:
                await abort_with(context, Overloaded())
            self.in_flight += 1
            bounded = left is not None and left < NO_DEADLINE_S
            token = deadlines.scope(left if bounded else None)
            try:
                # grpc.aio lets a handler run on after its deadline: stop it, so nothing more is
                # done for a caller that has gone. The grace lets the database's own
                # statement_timeout (the same deadline) stop a statement first, cleanly.
                async with asyncio.timeout(left + STOP_GRACE_S if bounded else None):
                    return await behavior(request, context)
            except TimeoutError:
                await abort_with(context, DeadlineExceeded())
            finally:
                self.in_flight -= 1
                deadlines.reset(token)

        return limited


class Bulkhead:
    """At most `concurrency` holders at once and `queue` more waiting; past that, `slot()`
    raises Overloaded at once instead of queueing without bound."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._running = asyncio.Semaphore(max(1, concurrency))
        self._capacity = max(1, concurrency) + max(0, queue)
        self.admitted = 0  # running + waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.admitted >= self._capacity:
            raise Overloaded()
        self.admitted += 1
        try:
            async with self._running:
                yield
        finally:
            self.admitted -= 1
