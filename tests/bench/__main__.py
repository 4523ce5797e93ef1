"""python -m tests.bench (`make bench`): see docs/benchmarks.md for the method and knobs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg

from libs.embedded import postgres_answers
from libs.settings import to_libpq_url
from libs.sql_counting import HEADER as SQL_HEADER
from tests.bench import cpu as cpu_meter
from tests.bench import seed as seeding
from tests.bench import sweep
from tests.bench.config import BenchConfig, BenchError, log
from tests.bench.floor import Floor, measure_floor
from tests.bench.grpc_load import run_grpc_load
from tests.bench.platform import (
    LOCAL_POSTGRES,
    Platform,
    Servers,
    bench_servers,
    external_platform,
    own_platform,
)
from tests.bench.report import (
    LOG_MAX_COST,
    LogRow,
    Row,
    SweepRow,
    cpu_table,
    log_table,
    main_table,
    platform_cpu_ms,
    sweep_table,
)
from tests.bench.scenarios import SCENARIOS, Scenario, complete_lesson_requests
from tests.bench.seed import Seed
from tests.bench.wrk import HttpRequest, LoadResult, ensure_wrk, run_wrk, split_round_robin

SEED_TIMEOUT_S = 60.0


def machine() -> str:
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split("[")[0].strip()
    return (
        f"{os.cpu_count()} cores, {memory} memory, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {wrk_version}"
    )


# The label of the rows of a platform that is not ours (its log level is unknown).
AS_RUNNING = "as running"
# Severity order, quietest last: the quietest level measured is what the others are held to.
SEVERITY = ("DEBUG", "INFO", "WARNING", "ERROR")


class Bench:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.target: Platform | None = None
        self.http = httpx.AsyncClient(timeout=SEED_TIMEOUT_S)
        # Rows by log level, then scenario; the first level's are the budget table's.
        self.rows: dict[str, dict[str, Row]] = {}
        self.sweep_rows: list[SweepRow] = []
        self.failures: list[str] = []
        self.floors: list[Floor] = []
        self.floor_problem: str | None = None
        # Lines and bytes each level's platform logged during its run.
        self.log_volume: dict[str, tuple[int, int]] = {}

    async def use(self, target: Platform) -> None:
        await self.http.aclose()
        self.target = target
        self.http = httpx.AsyncClient(base_url=target.base_url, timeout=SEED_TIMEOUT_S)

    @property
    def platform(self) -> Platform:
        assert self.target is not None
        return self.target

    # --- the floor ------------------------------------------------------------------------

    def measure_floor(self, admin_url: str | None) -> None:
        config = self.config
        if not config.floor:
            self.floor_problem = "BENCH_FLOOR=0"
            return
        if admin_url is None:
            self.floor_problem = "no PostgreSQL to run pgbench on (set DATABASE_URL)"
            return
        try:
            self.floors.append(
                measure_floor(
                    admin_url,
                    clients=config.connections,
                    threads=config.threads,
                    duration_s=config.duration_s,
                )
            )
        except BenchError as error:
            self.floor_problem = str(error)
            log(f"floor FAILED: {error}")

    @property
    def floor_tps(self) -> float | None:
        if not self.floors:
            return None
        return sum(floor.tps for floor in self.floors) / len(self.floors)

    # --- load -----------------------------------------------------------------------------

    def _wrk(self, per_thread: list[list[HttpRequest]], duration_s: int) -> LoadResult:
        return run_wrk(
            self.platform.base_url,
            per_thread,
            duration_s=duration_s,
            connections=self.config.connections,
        )

    def load(
        self, name: str, per_thread: list[list[HttpRequest]], warmup: list[list[HttpRequest]]
    ) -> tuple[LoadResult, dict[str, float]]:
        """The measured run, and CPU ms per request by process during it (empty when off)."""
        config = self.config
        level = self.platform.log_level or AS_RUNNING
        log(f"{name} [{level}]: {config.warmup_s} s warm-up, {config.duration_s} s measured")
        if config.warmup_s:
            self._wrk(warmup, config.warmup_s)
        meter = None
        if config.cpu and cpu_meter.available() and self.platform.pids:
            meter = cpu_meter.CpuMeter(
                self.platform.pids, self.platform.database_url, self.platform.database
            )
        before = meter.snapshot() if meter else None
        result = self._wrk(per_thread, config.duration_s)
        if meter is None or before is None:
            return result, {}
        return result, meter.per_request_ms(before, meter.snapshot(), result.requests)

    async def sql_per_request(self, requests: list[HttpRequest]) -> float | None:
        """Mean of the x-sql-statements header over `requests` (None when not reported)."""
        counts = []
        for request in requests:
            response = await self.http.request(
                request.method,
                request.path,
                content=request.body,
                headers={
                    **({"Authorization": f"Bearer {request.token}"} if request.token else {}),
                    **({"Content-Type": "application/json"} if request.body else {}),
                    **dict(request.headers),
                },
            )
            if response.status_code >= 400 or SQL_HEADER not in response.headers:
                return None
            counts.append(int(response.headers[SQL_HEADER]))
        return round(sum(counts) / len(counts), 1) if counts else None

    def analyze(self) -> None:
        """Fresh planner statistics after bulk seeding, as autovacuum would give them a minute
        later (and never, on a server running with autovacuum=off). Only on our own database."""
        if self.platform.database_url is None:
            return
        with psycopg.connect(self.platform.database_url, autocommit=True) as connection:
            connection.execute("ANALYZE")

    # --- scenarios --------------------------------------------------------------------------

    async def fresh_tokens(self, seed: Seed) -> None:
        # Access tokens expire; every scenario starts with new ones.
        await asyncio.gather(seed.instructor.login(self.http), seed.student.login(self.http))

    async def conditional(self, requests: list[HttpRequest]) -> list[HttpRequest] | str:
        """Each request with If-None-Match set to the ETag its URL answers now; or why not."""
        etags: dict[str, str] = {}
        for request in requests:
            if request.path in etags:
                continue
            headers = {"Authorization": f"Bearer {request.token}"} if request.token else {}
            response = await self.http.get(request.path, headers=headers)
            etag = response.headers.get("etag")
            if response.status_code != 200 or not etag:
                return f"GET {request.path} answered {response.status_code} without an ETag"
            again = await self.http.get(request.path, headers={**headers, "If-None-Match": etag})
            if again.status_code != 304:
                return f"If-None-Match with its own ETag answered {again.status_code}, not 304"
            etags[request.path] = etag
        return [
            dataclasses.replace(request, headers=(("If-None-Match", etags[request.path]),))
            for request in requests
        ]

    async def run_scenario(self, scenario: Scenario, seed: Seed, primary: bool) -> Row:
        assert scenario.http is not None
        await self.fresh_tokens(seed)
        if scenario.prepare is not None:
            await scenario.prepare(self.http, self.target, seed)
        requests = scenario.http(seed)
        if scenario.conditional:
            found = await self.conditional(requests)
            if isinstance(found, str):
                log(f"{scenario.name}: n/a ({found})")
                return Row(scenario.name, scenario.budget, None, skipped=found)
            requests = found
        per_thread = split_round_robin(requests, self.config.threads)
        per_thread = [part or requests[:1] for part in per_thread]
        rest, cpu = self.load(scenario.name, per_thread, per_thread)
        row = Row(scenario.name, scenario.budget, rest, cpu=cpu)
        if not primary:
            return row
        if self.config.sql_counts:
            row.sql_per_request = await self.sql_per_request(requests[:1])
        if self.config.grpc_baseline and scenario.grpc is not None:
            log(f"{scenario.name}: gRPC-direct baseline")
            await self.fresh_tokens(seed)
            row.grpc = run_grpc_load(
                self.platform.targets,
                scenario.grpc(seed),
                duration_s=self.config.duration_s,
                warmup_s=self.config.warmup_s,
                concurrency=self.config.connections,
            )
        return row

    async def run_complete_lesson(self, scenario: Scenario, seed: Seed, primary: bool) -> Row:
        config = self.config
        # One connection per wrk thread keeps each enrollment's lessons in order by construction.
        threads = config.connections
        lessons = len(seed.courses[0].lesson_ids)

        def enrollments_for(seconds: int) -> int:
            # Enough fresh lessons for the rate cap, the same number for every thread.
            needed = math.ceil(config.complete_rate_cap * seconds / lessons)
            return math.ceil(needed / threads) * threads

        measured_count = enrollments_for(config.duration_s)
        warmup_count = enrollments_for(config.warmup_s)
        log(
            f"complete_lesson: enrolling {measured_count + warmup_count + 1} times "
            f"(a fresh open lesson for each request at up to {config.complete_rate_cap}/s)"
        )
        started = time.monotonic()
        pool = await seeding.enrollment_pool(
            self.http, seed, measured_count + warmup_count + 1, config.seed_concurrency
        )
        self.analyze()
        log(f"complete_lesson: pool ready in {time.monotonic() - started:.0f} s")
        sample, warmup, measured = pool[0], pool[1 : warmup_count + 1], pool[warmup_count + 1 :]
        rest, cpu = self.load(
            "complete_lesson",
            complete_lesson_requests(measured, threads),
            complete_lesson_requests(warmup, threads),
        )
        row = Row("complete_lesson", scenario.budget, rest, cpu=cpu)
        if rest.repeated:
            row.notes.append(
                f"complete_lesson: the pool ran out: {rest.repeated} requests repeated an already "
                "completed lesson; raise BENCH_COMPLETE_RATE_CAP"
            )
        if config.sql_counts and primary:
            # The mean over a whole enrollment: 9 lessons plus the one that completes the course.
            row.sql_per_request = await self.sql_per_request(
                [
                    HttpRequest("POST", f"/api/progress/{pid}/complete/", sample.student.access)
                    for pid in sample.progress_ids
                ]
            )
        return row

    async def run_sweep(self, seed: Seed, level: str) -> None:
        swept = [s for s in SCENARIOS if s.swept and self.config.wants(s.name)]
        if not swept:
            return
        rows = self.rows.setdefault(level, {})
        small: dict[str, LoadResult] = {}
        for scenario in swept:
            row = rows.get(scenario.name)
            if row is None or row.rest is None:
                row = await self.run_scenario(scenario, seed, primary=False)
            assert row.rest is not None
            small[scenario.name] = row.rest
        config = self.config
        log(
            f"scale sweep: growing to {config.sweep_courses} courses and "
            f"{config.sweep_enrollments} enrollments through the API"
        )
        await sweep.grow(
            self.http,
            seed,
            config.sweep_courses,
            config.sweep_enrollments,
            config.seed_concurrency,
        )
        self.analyze()
        for scenario in swept:
            await self.fresh_tokens(seed)
            assert scenario.http is not None
            requests = scenario.http(seed)
            per_thread = [
                part or requests[:1] for part in split_round_robin(requests, self.config.threads)
            ]
            large, _ = self.load(f"{scenario.name} (large)", per_thread, per_thread)
            self.sweep_rows.append(SweepRow(scenario.name, small[scenario.name], large))

    def wanted(self) -> list[Scenario]:
        return [s for s in SCENARIOS if self.config.wants(s.name)]

    async def seed(self) -> Seed:
        config = self.config
        wanted = self.wanted()
        needs = set().union(*(s.needs for s in wanted)) if wanted else set()
        if config.sweep and any(s.swept for s in wanted):
            needs |= {"courses", "enrollments"}
        log(f"seeding through {self.platform.base_url}")
        started = time.monotonic()
        seed = await seeding.seed_base(
            self.http,
            config.seed_concurrency,
            courses=bool(needs),
            enrollments="enrollments" in needs,
        )
        self.analyze()
        log(f"seeded in {time.monotonic() - started:.0f} s")
        return seed

    async def run_one(self, scenario: Scenario, seed: Seed, level: str, primary: bool) -> None:
        rows = self.rows.setdefault(level, {})
        try:
            if scenario.http is not None:
                rows[scenario.name] = await self.run_scenario(scenario, seed, primary)
            else:
                rows[scenario.name] = await self.run_complete_lesson(scenario, seed, primary)
        except (BenchError, httpx.HTTPError) as error:
            self.failures.append(f"{scenario.name} [{level}]: {error}")
            log(f"{scenario.name} [{level}] FAILED: {error}")

    async def run_scenarios(self, seed: Seed, level: str, primary: bool) -> None:
        # Reads first, while the data is the base set (they are also the sweep's small rows);
        # complete_lesson last: its pool adds enrollments.
        for scenario in self.wanted():
            await self.run_one(scenario, seed, level, primary)

    async def sweep_safely(self, seed: Seed, level: str) -> None:
        try:
            await self.run_sweep(seed, level)
        except (BenchError, httpx.HTTPError) as error:
            self.failures.append(f"scale sweep: {error}")
            log(f"scale sweep FAILED: {error}")

    @contextlib.asynccontextmanager
    async def platform_at(self, servers: Servers, level: str) -> AsyncIterator[Platform]:
        """Our platform at `level` on the run's database; its log volume is added up after."""
        with own_platform(servers, level, self.config.sql_counts) as target:
            await self.use(target)
            yield target
        assert target.log_path is not None
        data = target.log_path.read_bytes()
        lines, size = self.log_volume.get(level, (0, 0))
        self.log_volume[level] = (lines + data.count(b"\n"), size + len(data))
        target.log_path.unlink()

    async def run_own(self) -> None:
        """Our own platform on a fresh database. With one log level: one platform for every
        scenario, then the sweep. With several: each scenario runs on a platform per level, one
        right after the other (ABBA order from one scenario to the next, so a drift in the
        machine's other load does not favour one level), then the sweep at the first level."""
        config = self.config
        levels = config.log_levels
        primary = levels[0]
        with bench_servers(config.keep_database) as servers:
            seed: Seed | None = None
            if len(levels) == 1:
                async with self.platform_at(servers, primary):
                    seed = await self.seed()
                    self.measure_floor(servers.admin_url)
                    await self.run_scenarios(seed, primary, primary=True)
                    if config.sweep:
                        await self.sweep_safely(seed, primary)
            else:
                for index, scenario in enumerate(self.wanted()):
                    for level in levels if index % 2 == 0 else levels[::-1]:
                        async with self.platform_at(servers, level):
                            if seed is None:
                                seed = await self.seed()
                                self.measure_floor(servers.admin_url)
                            await self.run_one(scenario, seed, level, primary=level == primary)
                if config.sweep and seed is not None:
                    async with self.platform_at(servers, primary):
                        await self.sweep_safely(seed, primary)
            if config.floor and self.floors:
                self.measure_floor(servers.admin_url)  # again, after: how much the floor moved

    async def run_external(self, base_url: str) -> None:
        config = self.config
        log(f"using the running platform at {base_url}")
        await self.use(external_platform(base_url))
        seed = await self.seed()
        admin = os.environ.get("DATABASE_URL") or (
            LOCAL_POSTGRES if postgres_answers(LOCAL_POSTGRES) else None
        )
        self.measure_floor(to_libpq_url(admin) if admin else None)
        await self.run_scenarios(seed, AS_RUNNING, primary=True)
        if config.sweep:
            await self.sweep_safely(seed, AS_RUNNING)

    async def close(self) -> None:
        await self.http.aclose()

    # --- report -----------------------------------------------------------------------------

    def primary_level(self) -> str:
        return AS_RUNNING if self.config.base_url else self.config.log_levels[0]

    def log_rows(self) -> tuple[list[LogRow], str, str] | None:
        levels = [level for level in SEVERITY if level in self.rows]
        if len(levels) < 2:
            return None
        quiet, loud = levels[-1], levels[0]  # the quietest against the chattiest
        rows = []
        for scenario in SCENARIOS:
            a, b = self.rows[quiet].get(scenario.name), self.rows[loud].get(scenario.name)
            if a is not None and b is not None and a.rest is not None and b.rest is not None:
                rows.append(
                    LogRow(scenario.name, a.rest, b.rest, platform_cpu_ms(a), platform_cpu_ms(b))
                )
        return rows, quiet, loud

    def report(self) -> bool:
        """Prints the tables; True when every budget that was measured is met."""
        config = self.config
        level = self.primary_level()
        by_name = self.rows.get(level, {})
        rows = [by_name[s.name] for s in SCENARIOS if s.name in by_name]
        floor = self.floor_tps
        print()
        print(f"machine: {machine()}")
        print(
            f"load: wrk, {config.connections} connections, {config.threads} threads "
            f"(complete_lesson: {config.connections}, one connection each), "
            f"{config.duration_s} s per scenario after {config.warmup_s} s warm-up; "
            f"gRPC baseline: grpc.aio, {config.connections} concurrent calls"
        )
        if self.floors:
            first = self.floors[0]
            each = " and ".join(f"{_int(f.tps)} tps" for f in self.floors)
            print(
                f"floor: pgbench -S, {first.clients} clients, {first.threads} threads, "
                f"{first.duration_s} s, before and after the scenarios: {each}; "
                f"'of floor' and the fraction budgets use {_int(floor or 0)} tps ({first.binary})"
            )
        else:
            print(f"floor: not measured ({self.floor_problem}); fraction budgets are n/a")
        print()
        print(f"budgets at LOG_LEVEL={level}:")
        print(main_table(rows, floor))
        for row in rows:
            for note in row.notes:
                print(f"note: {note}")
        ok = all(row.budget_met(floor) is not False for row in rows)
        logs = self.log_rows()
        if logs is not None:
            log_rows, quiet, loud = logs
            print()
            print(
                f"log levels, same run, same data, one platform after the other: what {loud} "
                f"costs against {quiet} (budget: at most {LOG_MAX_COST:.0%} of req/s; CPU per "
                "request, the platform's and its backends', moves less with other load):"
            )
            print(log_table(log_rows, quiet, loud))
            for name, (lines, size) in self.log_volume.items():
                print(
                    f"  the {name} platforms logged {_int(lines)} lines in all "
                    f"({size / 1e6:.1f} MB; start-up and seeding included)"
                )
            ok = ok and all(row.budget_met for row in log_rows)
        if any(row.cpu for row in rows):
            print()
            print(
                f"CPU ms per request by process at LOG_LEVEL={level} (gateway = all its workers; "
                "postgres = the bench database's backends; machine = every busy core, wrk and "
                "anything else running included):"
            )
            print(cpu_table(rows, os.cpu_count() or 1))
        if self.sweep_rows:
            print()
            print(
                f"scale sweep: base set ({seeding.COURSES} courses, "
                f"{seeding.ENROLLED_COURSES * 2} enrollments) vs {config.sweep_courses} courses "
                f"x {seeding.LESSONS_PER_COURSE} lessons and {config.sweep_enrollments} enrollments:"
            )
            print(
                sweep_table(
                    self.sweep_rows,
                    f"{seeding.COURSES}c/{seeding.ENROLLED_COURSES * 2}e",
                    f"{config.sweep_courses}c/{config.sweep_enrollments}e",
                )
            )
            ok = ok and all(row.budget_met for row in self.sweep_rows)
        for failure in self.failures:
            print(f"FAILED {failure}")
        ok = ok and not self.failures
        print()
        print("all budgets met" if ok else "some budgets NOT met (see docs/benchmarks.md)")
        return ok


def _int(value: float) -> str:
    return f"{value:,.0f}"


def main() -> None:
    try:
        config = BenchConfig.from_env()
        ensure_wrk()
        bench = Bench(config)

        async def go() -> None:
            try:
                if config.base_url is not None:
                    await bench.run_external(config.base_url)
                else:
                    log("starting the platform (make run's processes) on a fresh database")
                    await bench.run_own()
            finally:
                await bench.close()

        asyncio.run(go())
        ok = bench.report()
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if config.strict and not ok else 0)


if __name__ == "__main__":
    main()
