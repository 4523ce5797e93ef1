"""Driving wrk: install it if needed, write the request files, run, read the numbers back.

wrk (C, epoll, LuaJIT) is the load generator because on a 2-core machine shared with the server
a Python client would eat the CPU it measures; two wrk threads keep 16 connections busy for a few
per cent of one core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.bench.config import BenchError

SCRIPT = Path(__file__).with_name("requests.lua")
MARKER = "BENCH_JSON "
HEADER_SEPARATOR = "\x1f"  # between the extra headers of a request line (ASCII unit separator)
# Requests slower than this count as timeouts; far above any budget, so none is lost from p99.
TIMEOUT_S = 10


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    token: str | None = None
    # Already-serialised JSON.
    body: str | None = None
    # Extra headers (If-None-Match for the 304 scenario).
    headers: tuple[tuple[str, str], ...] = ()

    def line(self) -> str:
        extra = HEADER_SEPARATOR.join(f"{name}:{value}" for name, value in self.headers)
        fields = (self.method, self.path, self.token or "", self.body or "", extra)
        if any(char in field for field in fields[:4] for char in "\t\r\n\x1f"):
            raise BenchError(f"request fields must not contain tabs or newlines: {self}")
        return "\t".join(fields)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    # Requests that went past the end of their list (complete_lesson: no fresh lesson left).
    repeated: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError(
            "wrk is not installed. Install it (Debian/Ubuntu: `sudo apt-get install -y wrk`, "
            "macOS: `brew install wrk`) and run `make bench` again."
        )
    print("wrk not found: installing it with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get installed wrk but it is not on PATH")
    return found


def split_round_robin(requests: list[HttpRequest], threads: int) -> list[list[HttpRequest]]:
    return [requests[index::threads] for index in range(threads)]


def run_wrk(
    base_url: str,
    per_thread: list[list[HttpRequest]],
    *,
    duration_s: int,
    connections: int,
) -> LoadResult:
    """One wrk run; thread N replays per_thread[N] (so callers decide who gets which request)."""
    wrk = ensure_wrk()
    threads = len(per_thread)
    with tempfile.TemporaryDirectory(prefix="cp-wrk-") as scratch:
        prefix = Path(scratch) / "requests"
        for index, requests in enumerate(per_thread):
            if not requests:
                raise BenchError("every wrk thread needs at least one request")
            lines = "\n".join(request.line() for request in requests) + "\n"
            Path(f"{prefix}.{index}").write_text(lines, encoding="utf-8")
        command = [
            wrk,
            f"--threads={threads}",
            f"--connections={connections}",
            f"--duration={duration_s}s",
            f"--timeout={TIMEOUT_S}s",
            f"--script={SCRIPT}",
            base_url,
            "--",
            str(prefix),
            *(["debug"] if os.environ.get("BENCH_DEBUG") else []),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if os.environ.get("BENCH_DEBUG") and done.stderr:
            print(done.stderr[-4000:], file=sys.stderr)
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            numbers = json.loads(line.removeprefix(MARKER))
            return LoadResult(
                requests=numbers["requests"],
                duration_s=numbers["duration_us"] / 1e6,
                non_2xx=numbers["status_errors"],
                socket_errors=numbers["socket_errors"],
                p50_ms=numbers["p50_us"] / 1000,
                p99_ms=numbers["p99_us"] / 1000,
                repeated=numbers["repeated"],
            )
    raise BenchError(f"wrk printed no result (exit {done.returncode}):\n{done.stdout}{done.stderr}")
