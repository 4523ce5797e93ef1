"""Malformed request messages (bad wire data, invalid UTF-8 in a string field) on any method.

grpc answers a deserializer's exception with UNKNOWN and a message naming protobuf's DecodeError
and the message type. Instead, each method's deserializer is made tolerant: it returns
`MALFORMED`, and the call is answered INVALID_ARGUMENT "Malformed request." before any handler
(or token check) runs. `guard` does this for methods the server interceptor does not otherwise
wrap (health, reflection), of every call shape.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias, cast

import grpc

MESSAGE = "Malformed request."

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
# grpc-stubs type method handlers for the sync server; on grpc.aio they are coroutine functions
# (or async generators), taking the request (or an async iterator of them) and the context.
AsyncBehavior: TypeAlias = Callable[[Any, Context], Any]


class _Malformed:
    def __repr__(self) -> str:
        return "MALFORMED"


MALFORMED: Any = _Malformed()


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # protobuf's DecodeError, or whatever a custom deserializer raises
            return MALFORMED

    return deserialize


async def refuse(context: Context) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MESSAGE)


async def _checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    async for request in requests:
        if request is MALFORMED:
            await refuse(context)
        yield request


async def _finish(result: Any, context: Context) -> Any:
    """Run a behaviour's result: a coroutine (unary answer, or context.write style) or an async
    generator of responses, written one by one."""
    if inspect.isasyncgen(result):
        async for response in result:
            await context.write(response)
        return None
    return await result


def guard(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """The same method, answering INVALID_ARGUMENT to malformed request messages."""
    deserializer = tolerant(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.unary_unary:
        inner = cast(AsyncBehavior, handler.unary_unary)

        async def unary_unary(request: Any, context: Context) -> Any:
            if request is MALFORMED:
                await refuse(context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, deserializer, serializer)
    if handler.unary_stream:
        inner_us = cast(AsyncBehavior, handler.unary_stream)

        async def unary_stream(request: Any, context: Context) -> None:
            if request is MALFORMED:
                await refuse(context)
            await _finish(inner_us(request, context), context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, deserializer, serializer)
    if handler.stream_unary:
        inner_su = cast(AsyncBehavior, handler.stream_unary)

        async def stream_unary(requests: AsyncIterator[Any], context: Any) -> Any:
            return await inner_su(_checked(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)
    inner_ss = cast(AsyncBehavior, handler.stream_stream)

    async def stream_stream(requests: AsyncIterator[Any], context: Any) -> None:
        await _finish(inner_ss(_checked(requests, context), context), context)

    return grpc.stream_stream_rpc_method_handler(stream_stream, deserializer, serializer)
