"""Which renderer a process picks (libs/logging.py): coloured key=value lines when stderr is a
terminal, JSON otherwise, and LOG_JSON set explicitly wins either way. The terminal is a real
pseudo-terminal; the process is tests/logging_probe.py failing with secrets around it, so the
console lines are held to the same redaction policy as the JSON ones."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import grpc
from google.protobuf.wrappers_pb2 import StringValue

from libs.settings import Settings
from libs.tokens import issuer_from_settings
from tests.test_libs_logging import SECRETS

ANSI_ESCAPE = "\x1b["


def probe_output(settings: Settings, token: str, on_terminal: bool, log_json: str | None) -> str:
    """Run the probe with stderr on a pseudo-terminal (or a pipe), make it fail, stop it; its
    stderr."""
    env = {**os.environ, "JWT_KEYS_DIR": str(settings.jwt_keys_dir)}
    env.pop("LOG_JSON", None)
    if log_json is not None:
        env["LOG_JSON"] = log_json
    master, replica = pty.openpty() if on_terminal else os.pipe()  # (read end, write end)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.logging_probe"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=replica,
    )
    os.close(replica)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                "/courseplatform.probe.v1.LoggingProbe/Fail",
                request_serializer=StringValue.SerializeToString,
                response_deserializer=StringValue.FromString,
            )
            try:
                call(StringValue(), metadata=(("authorization", f"Bearer {token}"),), timeout=10)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INTERNAL
        process.send_signal(signal.SIGTERM)
        return _read_all(master, process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(master)


def _read_all(fd: int, process: subprocess.Popen[bytes]) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty's reader gets EIO once the writer is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif process.poll() is not None:
            break
    return b"".join(chunks).decode(errors="replace")


def access_token(settings: Settings) -> str:
    return issuer_from_settings(settings).issue_access(
        user_id=9, role="Student", email="log@example.com", full_name="Log Probe"
    )


def assert_no_secret(output: str, token: str) -> None:
    assert token not in output
    assert token[:20] not in output
    assert token.split(".")[1][:20] not in output
    for secret in SECRETS:
        assert secret not in output


def test_a_terminal_gets_coloured_lines_with_the_same_redaction(settings: Settings) -> None:
    token = access_token(settings)
    output = probe_output(settings, token, on_terminal=True, log_json=None)
    assert ANSI_ESCAPE in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert not any(line.startswith("{") for line in lines), lines[:3]
    assert "about to fail" in output and "unhandled error" in output
    # The exception is a readable traceback built from the bounded, redacted one: type and
    # message, frames, no locals.
    assert "Traceback (most recent call last):" in output
    assert "RuntimeError: failed while holding [redacted]" in output
    assert "holder" not in output  # the frames' local variable
    assert "[redacted]" in output
    assert_no_secret(output, token)


def test_log_json_true_wins_on_a_terminal(settings: Settings) -> None:
    token = access_token(settings)
    output = probe_output(settings, token, on_terminal=True, log_json="true")
    lines = [line for line in output.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]
    assert {"about to fail", "unhandled error"} <= {event["event"] for event in events}
    assert ANSI_ESCAPE not in output
    assert_no_secret(output, token)


def test_json_when_not_a_terminal_and_log_json_false_gives_plain_lines(
    settings: Settings,
) -> None:
    token = access_token(settings)
    piped = probe_output(settings, token, on_terminal=False, log_json=None)
    events = [json.loads(line) for line in piped.splitlines() if line.strip()]
    assert "unhandled error" in {event["event"] for event in events}

    plain = probe_output(settings, token, on_terminal=False, log_json="false")
    assert ANSI_ESCAPE not in plain  # key=value lines, coloured only on a terminal
    assert not any(line.startswith("{") for line in plain.splitlines() if line.strip())
    assert "unhandled error" in plain
    assert_no_secret(plain, token)
