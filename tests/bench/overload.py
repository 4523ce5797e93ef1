"""Overload scenarios (#16, docs/overload.md): `python -m tests.bench.overload`.

Each scenario replays one read at 16 connections (the reference, as the main bench rows) and
then at 8x and 32x that (128 and 512), with wrk driving the load and counting answers by kind
(tests/bench/overload.lua). wrk reports one latency distribution for all answers, so latency by
kind comes from probes: while wrk runs, three Python clients, one request at a time every
PROBE_INTERVAL_S, send the scenario's own request (latency of successes and of refusals),
GET /readyz/ and POST /api/token/verify/. Probe samples are fewer than wrk's (a p99 over some
hundred samples) and include the probe's own time on a busy machine: read them as an upper bound.

Budgets (issue #16): goodput >= 80 % of the 16-connection rate; no 504 and no socket error;
refusals <= 50 ms at p99; successes' p99 <= 4x the 16-connection p99; /readyz/ and token
verification <= 100 ms at p99 during the overload.

Knobs: BENCH_BASE_URL (a running platform instead of our own), BENCH_DURATION (s per run, 10),
BENCH_WARMUP (2), BENCH_THREADS (2), BENCH_OVERLOAD_CONNECTIONS ("128,512"),
BENCH_SCENARIOS (names, comma separated), BENCH_OWN_POSTGRES=1 (an embedded PostgreSQL of its
own instead of the one on 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from libs.embedded import EmbeddedPostgres
from tests.bench import seed as seeding
from tests.bench.config import BenchError, log
from tests.bench.platform import Platform, bench_servers, external_platform, own_platform
from tests.bench.scenarios import course_detail_http, list_progress_http
from tests.bench.seed import Seed
from tests.bench.wrk import MARKER, TIMEOUT_S, HttpRequest, ensure_wrk, split_round_robin

SCRIPT = Path(__file__).with_name("overload.lua")
REFERENCE_CONNECTIONS = 16
PROBE_INTERVAL_S = 0.02


@dataclass(frozen=True)
class OverloadScenario:
    name: str
    http: Callable[[Seed], list[HttpRequest]]


OVERLOAD_SCENARIOS = (
    OverloadScenario("overload_list_progress", list_progress_http),
    OverloadScenario("overload_course_detail", course_detail_http),
)


@dataclass(frozen=True)
class Budget:
    min_goodput_share: float = 0.8
    max_refusal_p99_ms: float = 50.0
    max_success_p99_factor: float = 4.0
    max_probe_p99_ms: float = 100.0


BUDGET = Budget()


@dataclass
class Counts:
    duration_s: float
    requests: int
    ok: int
    refused: int
    timed_out: int
    other: int
    socket_errors: int
    p99_ms: float

    @property
    def goodput(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def refused_share(self) -> float:
        return self.refused / self.requests if self.requests else 0.0


@dataclass
class Probe:
    """Latencies (ms) of one probe's answers, by status."""

    by_status: dict[int, list[float]] = field(default_factory=dict)
    errors: int = 0

    def add(self, status: int, ms: float) -> None:
        self.by_status.setdefault(status, []).append(ms)

    def p99(self, statuses: Callable[[int], bool]) -> float | None:
        samples = sorted(
            ms for status, values in self.by_status.items() if statuses(status) for ms in values
        )
        if not samples:
            return None
        return samples[min(len(samples) - 1, int(len(samples) * 0.99))]

    def count(self, statuses: Callable[[int], bool]) -> int:
        return sum(len(values) for status, values in self.by_status.items() if statuses(status))


def success(status: int) -> bool:
    return status < 300


def refusal(status: int) -> bool:
    return status == 503


def any_status(_: int) -> bool:
    return True


@dataclass
class Run:
    connections: int
    counts: Counts
    route: Probe
    readyz: Probe
    verify: Probe


def run_wrk(
    base_url: str, per_thread: list[list[HttpRequest]], duration_s: int, connections: int
) -> Counts:
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="cp-overload-") as scratch:
        prefix = Path(scratch) / "requests"
        for index, requests in enumerate(per_thread):
            lines = "\n".join(request.line() for request in requests) + "\n"
            Path(f"{prefix}.{index}").write_text(lines, encoding="utf-8")
        command = [
            wrk,
            f"--threads={len(per_thread)}",
            f"--connections={connections}",
            f"--duration={duration_s}s",
            f"--timeout={TIMEOUT_S}s",
            f"--script={SCRIPT}",
            base_url,
            "--",
            str(prefix),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            numbers = json.loads(line.removeprefix(MARKER))
            return Counts(
                duration_s=numbers["duration_us"] / 1e6,
                requests=numbers["requests"],
                ok=numbers["ok"],
                refused=numbers["refused"],
                timed_out=numbers["timed_out"],
                other=numbers["other"],
                socket_errors=numbers["socket_errors"],
                p99_ms=numbers["p99_us"] / 1000,
            )
    raise BenchError(f"wrk printed no result (exit {done.returncode}):\n{done.stdout}{done.stderr}")


async def probe(base_url: str, request: HttpRequest, stop: asyncio.Event) -> Probe:
    found = Probe()
    headers = {"Authorization": f"Bearer {request.token}"} if request.token else {}
    if request.body:
        headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as http:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await http.request(
                    request.method, request.path, content=request.body, headers=headers
                )
            except httpx.HTTPError:
                found.errors += 1
            else:
                found.add(response.status_code, (time.perf_counter() - started) * 1000)
            await asyncio.sleep(PROBE_INTERVAL_S)
    return found


async def measure(
    base_url: str,
    requests: list[HttpRequest],
    seed: Seed,
    connections: int,
    duration_s: int,
    threads: int,
) -> Run:
    per_thread = [part or requests[:1] for part in split_round_robin(requests, threads)]
    verify = HttpRequest(
        "POST", "/api/token/verify/", None, json.dumps({"token": seed.student.access})
    )
    stop = asyncio.Event()
    probes = [
        asyncio.create_task(probe(base_url, request, stop))
        for request in (requests[0], HttpRequest("GET", "/readyz/"), verify)
    ]
    try:
        counts = await asyncio.to_thread(run_wrk, base_url, per_thread, duration_s, connections)
    finally:
        stop.set()
    route, readyz, verified = await asyncio.gather(*probes)
    return Run(connections, counts, route, readyz, verified)


async def settle(http: httpx.AsyncClient, request: HttpRequest) -> None:
    """Waits until the platform serves `request` again: work admitted during a run finishes
    (within the request deadline) after wrk has gone, and meanwhile new requests are refused."""
    headers = {"Authorization": f"Bearer {request.token}"} if request.token else {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = await http.request(request.method, request.path, headers=headers)
        if response.status_code < 300:
            return
        await asyncio.sleep(float(response.headers.get("retry-after", "0.5")))
    raise BenchError(f"{request.path} still refused 30 s after the load stopped")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def verdicts(reference: Run, run: Run) -> list[str]:
    """The budgets `run` misses (empty: all met)."""
    missed = []
    counts = run.counts
    if counts.goodput < BUDGET.min_goodput_share * reference.counts.goodput:
        missed.append("goodput")
    if counts.timed_out or counts.socket_errors:
        missed.append("504/socket errors")
    refusal_p99 = run.route.p99(refusal)
    if refusal_p99 is not None and refusal_p99 > BUDGET.max_refusal_p99_ms:
        missed.append("refusal p99")
    success_p99, reference_p99 = run.route.p99(success), reference.route.p99(success)
    if (
        success_p99 is not None
        and reference_p99 is not None
        and success_p99 > BUDGET.max_success_p99_factor * reference_p99
    ):
        missed.append("success p99")
    for name, found in (("readyz", run.readyz), ("verify", run.verify)):
        p99 = found.p99(any_status)
        if (
            p99 is None
            or p99 > BUDGET.max_probe_p99_ms
            or found.count(success) < found.count(any_status)
        ):
            missed.append(f"{name} p99")
    return missed


def table(name: str, runs: list[Run]) -> str:
    reference = runs[0]
    header = (
        "| scenario | conns | goodput/s | vs 16 | 503 share | 503 p99 ms | 2xx p99 ms | 504 | other "
        "| socket err | wrk p99 ms | /readyz/ p99 ms | verify p99 ms | budget |"
    )
    lines = [header, "|" + "---|" * 14]
    for run in runs:
        counts = run.counts
        missed = verdicts(reference, run) if run is not reference else []
        budget = (
            "reference"
            if run is reference
            else ("met" if not missed else "missed: " + ", ".join(missed))
        )
        lines.append(
            f"| {name} | {run.connections} | {counts.goodput:.0f} | "
            f"{counts.goodput / reference.counts.goodput * 100 if reference.counts.goodput else 0:.0f} % | "
            f"{counts.refused_share * 100:.0f} % | {_ms(run.route.p99(refusal))} | "
            f"{_ms(run.route.p99(success))} | {counts.timed_out} | {counts.other} | "
            f"{counts.socket_errors} | {counts.p99_ms:.0f} | {_ms(run.readyz.p99(any_status))} | "
            f"{_ms(run.verify.p99(any_status))} | {budget} |"
        )
    return "\n".join(lines)


def _connections() -> list[int]:
    raw = os.environ.get("BENCH_OVERLOAD_CONNECTIONS", "128,512")
    return [int(part) for part in raw.split(",") if part.strip()]


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, "").strip() or default)


@contextlib.contextmanager
def platform() -> Iterator[Platform]:
    base_url = os.environ.get("BENCH_BASE_URL", "").strip().rstrip("/")
    if base_url:
        yield external_platform(base_url)
    elif os.environ.get("BENCH_OWN_POSTGRES") and "DATABASE_URL" not in os.environ:
        # A private embedded PostgreSQL: the shared server's max_connections is not ours.
        with tempfile.TemporaryDirectory(prefix="cp-overload-pg-") as scratch:
            server = EmbeddedPostgres(Path(scratch) / "postgres")
            os.environ["DATABASE_URL"] = server.url()
            try:
                with bench_servers() as servers, own_platform(servers, count_sql=False) as target:
                    yield target
            finally:
                del os.environ["DATABASE_URL"]
                server.stop()
    else:
        with bench_servers() as servers, own_platform(servers, count_sql=False) as target:
            yield target


async def run_all(target: Platform) -> list[str]:
    duration_s, warmup_s, threads = (
        _int("BENCH_DURATION", 10),
        _int("BENCH_WARMUP", 2),
        _int("BENCH_THREADS", 2),
    )
    only = {
        part.strip() for part in os.environ.get("BENCH_SCENARIOS", "").split(",") if part.strip()
    }
    tables = []
    async with httpx.AsyncClient(base_url=target.base_url, timeout=60) as http:
        log(f"seeding through {target.base_url}")
        seed = await seeding.seed_base(http, 8, courses=True, enrollments=True)
        for scenario in OVERLOAD_SCENARIOS:
            if only and scenario.name not in only:
                continue
            await settle(http, HttpRequest("GET", "/api/courses/", seed.student.access))
            await asyncio.gather(seed.instructor.login(http), seed.student.login(http))
            requests = scenario.http(seed)
            runs = []
            for connections in (REFERENCE_CONNECTIONS, *_connections()):
                log(f"{scenario.name}: {connections} connections, {duration_s} s")
                if warmup_s:
                    warm = [part or requests[:1] for part in split_round_robin(requests, threads)]
                    await asyncio.to_thread(run_wrk, target.base_url, warm, warmup_s, connections)
                await settle(http, requests[0])
                runs.append(
                    await measure(target.base_url, requests, seed, connections, duration_s, threads)
                )
            tables.append(table(scenario.name, runs))
            print(tables[-1], flush=True)
    return tables


def main() -> None:
    ensure_wrk()
    with platform() as target:
        tables = asyncio.run(run_all(target))
    print()
    print(f"overload: {_int('BENCH_DURATION', 10)} s per run; budgets in tests/bench/overload.py")
    for text in tables:
        print()
        print(text)


if __name__ == "__main__":
    main()
