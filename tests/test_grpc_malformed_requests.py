"""Malformed protobuf on every gRPC method of every service (health and reflection included),
with and without a token: INVALID_ARGUMENT "Malformed request.", nothing about Python or
protobuf. Raw bytes go out through generic channel calls, one per method descriptor."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from courseplatform.catalog.v1 import catalog_pb2
from courseplatform.identity.v1 import identity_pb2
from courseplatform.learning.v1 import learning_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from libs.settings import Settings
from libs.tokens import issuer_from_settings

# service name (as in the `services` fixture) -> the proto services its server answers
SERVED = {
    "identity": identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    "catalog": catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    "learning": learning_pb2.DESCRIPTOR.services_by_name["LearningService"],
}
COMMON = [
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
]
TRUNCATED = {
    "length past the end": b"\x0a\x10ab",
    "unterminated varint": b"\x08\x80",
}
LEAKS = ("protobuf", "decode", "pars", "python", "unexpected", "class", "traceback")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def bad_utf8(message: Descriptor, depth: int = 0) -> bytes | None:
    """Wire data putting invalid UTF-8 into the first string field (nested ones too)."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return _length_delimited(field.number, b"ok\xff\xfe")
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            inner = bad_utf8(field.message_type, depth + 1)
            if inner is not None:
                return _length_delimited(field.number, inner)
    return None


def cases() -> Iterator[tuple[str, MethodDescriptor, str, bytes]]:
    for name, service in SERVED.items():
        for descriptor in (service, *COMMON):
            for method in descriptor.methods:
                payloads = dict(TRUNCATED)
                if (utf8 := bad_utf8(method.input_type)) is not None:
                    payloads["invalid UTF-8"] = utf8
                for label, payload in payloads.items():
                    yield name, method, label, payload


CASES = list(cases())


async def call_raw(channel: grpc.aio.Channel, method: MethodDescriptor, payload: bytes, metadata):
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming:
        call = channel.stream_stream(path)(iter([payload]), metadata=metadata, timeout=5)
        return [reply async for reply in call]
    if method.server_streaming:
        call = channel.unary_stream(path)(payload, metadata=metadata, timeout=5)
        return [reply async for reply in call]
    return await channel.unary_unary(path)(payload, metadata=metadata, timeout=5)


async def test_the_cases_cover_every_service_each_server_lists(services: dict[str, str]) -> None:
    """What each server answers (by its own reflection) is exactly what the cases cover."""
    for name, target in services.items():
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.stream_stream(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
            replies = [reply async for reply in call]
        listed = {item.name for item in replies[0].list_services_response.service}
        covered = {m.containing_service.full_name for s, m, _, _ in CASES if s == name}
        assert listed == covered, name
    assert any(label == "invalid UTF-8" for _, _, label, _ in CASES)


@pytest.mark.parametrize("with_token", [False, True], ids=["no-token", "token"])
@pytest.mark.parametrize(
    ("service", "method", "label", "payload"),
    CASES,
    ids=[f"{s}:{m.containing_service.name}.{m.name}:{label}" for s, m, label, _ in CASES],
)
async def test_malformed_request_is_invalid_argument(
    services: dict[str, str],
    settings: Settings,
    service: str,
    method: MethodDescriptor,
    label: str,
    payload: bytes,
    with_token: bool,
) -> None:
    metadata: tuple[tuple[str, str], ...] = ()
    if with_token:
        token = issuer_from_settings(settings).issue_access(
            user_id=1, role="Student", email="m@example.com", full_name="M"
        )
        metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(services[service]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call_raw(channel, method, payload, metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    assert caught.value.details() == "Malformed request."
    trailers = str(caught.value.trailing_metadata()).lower()
    assert not any(word in trailers for word in LEAKS), trailers
