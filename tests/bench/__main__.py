"""python -m tests.bench (`make bench`): see docs/benchmarks.md for the method and knobs."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

from libs.sql_counting import HEADER as SQL_HEADER
from tests.bench import seed as seeding
from tests.bench import sweep
from tests.bench.config import BenchConfig, BenchError, log
from tests.bench.grpc_load import run_grpc_load
from tests.bench.platform import Platform, external_platform, own_platform
from tests.bench.report import Row, SweepRow, main_table, sweep_table
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


class Bench:
    def __init__(self, config: BenchConfig, target: Platform) -> None:
        self.config = config
        self.target = target
        self.http = httpx.AsyncClient(base_url=target.base_url, timeout=SEED_TIMEOUT_S)
        self.rows: dict[str, Row] = {}
        self.sweep_rows: list[SweepRow] = []
        self.failures: list[str] = []

    # --- load -----------------------------------------------------------------------------

    def _wrk(self, per_thread: list[list[HttpRequest]], duration_s: int) -> LoadResult:
        return run_wrk(
            self.target.base_url,
            per_thread,
            duration_s=duration_s,
            connections=self.config.connections,
        )

    def load(
        self, name: str, per_thread: list[list[HttpRequest]], warmup: list[list[HttpRequest]]
    ) -> LoadResult:
        config = self.config
        log(f"{name}: {config.warmup_s} s warm-up, {config.duration_s} s measured")
        if config.warmup_s:
            self._wrk(warmup, config.warmup_s)
        return self._wrk(per_thread, config.duration_s)

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
                },
            )
            if response.status_code >= 400 or SQL_HEADER not in response.headers:
                return None
            counts.append(int(response.headers[SQL_HEADER]))
        return round(sum(counts) / len(counts), 1) if counts else None

    def analyze(self) -> None:
        """Fresh planner statistics after bulk seeding, as autovacuum would give them a minute
        later (and never, on a server running with autovacuum=off). Only on our own database."""
        if self.target.database_url is None:
            return
        with psycopg.connect(self.target.database_url, autocommit=True) as connection:
            connection.execute("ANALYZE")

    # --- scenarios --------------------------------------------------------------------------

    async def fresh_tokens(self, seed: Seed) -> None:
        # Access tokens expire; every scenario starts with new ones.
        await asyncio.gather(seed.instructor.login(self.http), seed.student.login(self.http))

    async def run_scenario(self, scenario: Scenario, seed: Seed) -> Row:
        assert scenario.http is not None
        await self.fresh_tokens(seed)
        if scenario.prepare is not None:
            await scenario.prepare(self.http, self.target, seed)
        requests = scenario.http(seed)
        per_thread = split_round_robin(requests, self.config.threads)
        per_thread = [part or requests[:1] for part in per_thread]
        rest = self.load(scenario.name, per_thread, per_thread)
        row = Row(scenario.name, scenario.budget, rest)
        if self.config.sql_counts:
            row.sql_per_request = await self.sql_per_request(requests[:1])
        if self.config.grpc_baseline and scenario.grpc is not None:
            log(f"{scenario.name}: gRPC-direct baseline")
            await self.fresh_tokens(seed)
            row.grpc = run_grpc_load(
                self.target.targets,
                scenario.grpc(seed),
                duration_s=self.config.duration_s,
                warmup_s=self.config.warmup_s,
                concurrency=self.config.connections,
            )
        return row

    async def run_complete_lesson(self, seed: Seed) -> Row:
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
        rest = self.load(
            "complete_lesson",
            complete_lesson_requests(measured, threads),
            complete_lesson_requests(warmup, threads),
        )
        row = Row("complete_lesson", None, rest)
        if rest.repeated:
            row.notes.append(
                f"complete_lesson: the pool ran out: {rest.repeated} requests repeated an already "
                "completed lesson; raise BENCH_COMPLETE_RATE_CAP"
            )
        if config.sql_counts:
            # The mean over a whole enrollment: 9 lessons plus the one that completes the course.
            row.sql_per_request = await self.sql_per_request(
                [
                    HttpRequest("POST", f"/api/progress/{pid}/complete/", sample.student.access)
                    for pid in sample.progress_ids
                ]
            )
        return row

    async def run_sweep(self, seed: Seed) -> None:
        swept = [s for s in SCENARIOS if s.swept and self.config.wants(s.name)]
        if not swept:
            return
        small: dict[str, LoadResult] = {}
        for scenario in swept:
            if scenario.name in self.rows:
                small[scenario.name] = self.rows[scenario.name].rest
            else:
                small[scenario.name] = (await self.run_scenario(scenario, seed)).rest
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
            large = self.load(f"{scenario.name} (large)", per_thread, per_thread)
            self.sweep_rows.append(SweepRow(scenario.name, small[scenario.name], large))

    async def run(self) -> None:
        config = self.config
        wanted = [s for s in SCENARIOS if config.wants(s.name)]
        needs = set().union(*(s.needs for s in wanted)) if wanted else set()
        if config.sweep and any(s.swept for s in wanted):
            needs |= {"courses", "enrollments"}
        log(f"seeding through {self.target.base_url}")
        started = time.monotonic()
        seed = await seeding.seed_base(
            self.http,
            config.seed_concurrency,
            courses=bool(needs),
            enrollments="enrollments" in needs,
        )
        self.analyze()
        log(f"seeded in {time.monotonic() - started:.0f} s")
        # Reads first, while the data is the base set (they are also the sweep's small rows);
        # complete_lesson last but one: its pool adds enrollments.
        for scenario in wanted:
            try:
                if scenario.http is not None:
                    self.rows[scenario.name] = await self.run_scenario(scenario, seed)
                else:
                    self.rows[scenario.name] = await self.run_complete_lesson(seed)
            except (BenchError, httpx.HTTPError) as error:
                self.failures.append(f"{scenario.name}: {error}")
                log(f"{scenario.name} FAILED: {error}")
        if config.sweep:
            try:
                await self.run_sweep(seed)
            except (BenchError, httpx.HTTPError) as error:
                self.failures.append(f"scale sweep: {error}")
                log(f"scale sweep FAILED: {error}")

    async def close(self) -> None:
        await self.http.aclose()

    # --- report -----------------------------------------------------------------------------

    def report(self) -> bool:
        """Prints the tables; True when every budget that was measured is met."""
        config = self.config
        rows = [self.rows[s.name] for s in SCENARIOS if s.name in self.rows]
        print()
        print(f"machine: {machine()}")
        print(
            f"load: wrk, {config.connections} connections, {config.threads} threads "
            f"(complete_lesson: {config.connections}, one connection each), "
            f"{config.duration_s} s per scenario after {config.warmup_s} s warm-up; "
            f"gRPC baseline: grpc.aio, {config.connections} concurrent calls"
        )
        print()
        print(main_table(rows))
        for row in rows:
            for note in row.notes:
                print(f"note: {note}")
        ok = all(row.budget_met is not False for row in rows)
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


@contextlib.contextmanager
def platform_under_test(config: BenchConfig) -> Iterator[Platform]:
    if config.base_url is not None:
        log(f"using the running platform at {config.base_url}")
        yield external_platform(config.base_url)
    else:
        log("starting the platform (make run's processes) on a fresh database")
        with own_platform(config.keep_database, config.sql_counts) as target:
            yield target


def main() -> None:
    try:
        config = BenchConfig.from_env()
        ensure_wrk()
        with platform_under_test(config) as target:
            bench = Bench(config, target)

            async def go() -> None:
                try:
                    await bench.run()
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
