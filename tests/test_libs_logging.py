"""The logging policy (libs/logging.py) on a real failing gRPC server in its own process: the
caller's token, passwords and reset codes never reach the log, exceptions carry type and
frames but no locals, and every line is bounded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import grpc
from google.protobuf.wrappers_pb2 import StringValue

from libs.settings import Settings
from libs.tokens import issuer_from_settings

MAX_LINE = 8192
SECRETS = ("hunter2-secret-password", "RESET-123456")


async def run_probe(settings: Settings, token: str) -> list[str]:
    """Start the probe, make its method fail with `token`, stop it; its stderr lines."""
    env = {**os.environ, "JWT_KEYS_DIR": str(settings.jwt_keys_dir)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.logging_probe",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        port = int(await asyncio.wait_for(process.stdout.readline(), timeout=30))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                "/courseplatform.probe.v1.LoggingProbe/Fail",
                request_serializer=StringValue.SerializeToString,
                response_deserializer=StringValue.FromString,
            )
            try:
                await call(
                    StringValue(), metadata=(("authorization", f"Bearer {token}"),), timeout=10
                )
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.INTERNAL
                assert token not in str(error.details())
            else:
                raise AssertionError("the probe method was expected to fail")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stderr = await asyncio.wait_for(process.stderr.read(), timeout=30)
        await process.wait()
    return stderr.decode().splitlines()


async def test_a_failing_call_logs_no_secret_no_locals_and_bounded_lines(
    settings: Settings,
) -> None:
    token = issuer_from_settings(settings).issue_access(
        user_id=9, role="Student", email="log@example.com", full_name="Log Probe"
    )
    lines = await run_probe(settings, token)
    output = "\n".join(lines)
    events = [json.loads(line) for line in lines]
    by_event = {event["event"]: event for event in events}

    # What happened is all there ...
    crash = by_event["unhandled error"]
    [stack] = crash["exception"]
    assert stack["exc_type"] == "RuntimeError"
    assert stack["frames"] and all("locals" not in frame for frame in stack["frames"])
    assert len(stack["frames"]) <= 13  # 12 kept, plus the "Skipped frames" marker
    assert "[redacted]" in stack["exc_value"]
    assert by_event["rpc"]["grpc_status"] == "INTERNAL"
    warning = by_event["about to fail"]
    assert warning["authorization"] == "[redacted]"
    assert warning["password"] == "[redacted]"
    assert warning["headers"]["Authorization"] == "[redacted]"
    assert warning["headers"]["x-request-id"] == "r1"
    assert warning["note"].startswith("the caller's token is [redacted] (user 9)")
    assert "a library logs [redacted]" in by_event
    # ... and no secret is.
    assert token not in output
    assert token[:20] not in output
    assert token.split(".")[1][:20] not in output  # the claims part either
    for secret in SECRETS:
        assert secret not in output
    assert max(len(line) for line in lines) <= MAX_LINE, max(len(line) for line in lines)
