"""What a bench run does, from BENCH_* environment variables (see docs/benchmarks.md)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the report."""
    print(message, file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The bench cannot go on (a tool is missing, the platform did not start, seeding failed)."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise BenchError(f"{name} must be an integer, got {raw!r}") from error
    if value < 0:
        raise BenchError(f"{name} must not be negative")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in {"1", "true", "yes", "on"}


def _names(name: str) -> frozenset[str] | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _levels(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    levels = tuple(dict.fromkeys(part.strip().upper() for part in raw.split(",") if part.strip()))
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        raise BenchError(f"{name} takes a comma-separated subset of {', '.join(LEVELS)}")
    return levels


@dataclass(frozen=True)
class BenchConfig:
    # An already running platform; None: the bench starts its own on a fresh database.
    base_url: str | None
    duration_s: int
    warmup_s: int
    connections: int
    threads: int
    # Exit 1 when a budget is missed.
    strict: bool
    # Only these scenarios (None: all).
    only: frozenset[str] | None
    grpc_baseline: bool
    sql_counts: bool
    sweep: bool
    # The sweep's large data set.
    sweep_courses: int
    sweep_enrollments: int
    # complete_lesson: the highest rate the pre-built pool of open lessons must cover.
    complete_rate_cap: int
    # Concurrency of the seeding clients.
    seed_concurrency: int
    keep_database: bool
    # One platform per level, each running the same scenarios in the same run; the first is
    # the one the budget table, SQL counts and the sweep come from. Ours only.
    log_levels: tuple[str, ...]
    # pgbench -S before and after the scenarios (the floor budgets are fractions of).
    floor: bool
    # The per-process CPU table.
    cpu: bool

    @classmethod
    def from_env(cls) -> BenchConfig:
        base_url = os.environ.get("BENCH_BASE_URL", "").strip().rstrip("/") or None
        config = cls(
            base_url=base_url,
            duration_s=_int("BENCH_DURATION", 10),
            warmup_s=_int("BENCH_WARMUP", 2),
            connections=_int("BENCH_CONNECTIONS", 16),
            threads=_int("BENCH_THREADS", 2),
            strict=_flag("BENCH_STRICT", False),
            only=_names("BENCH_SCENARIOS"),
            grpc_baseline=_flag("BENCH_GRPC", True),
            sql_counts=_flag("BENCH_SQL", True),
            # Growing someone's running platform by 3,000 courses is opt-in.
            sweep=_flag("BENCH_SWEEP", base_url is None),
            sweep_courses=_int("BENCH_SWEEP_COURSES", 3000),
            sweep_enrollments=_int("BENCH_SWEEP_ENROLLMENTS", 10_000),
            complete_rate_cap=_int("BENCH_COMPLETE_RATE_CAP", 1000),
            seed_concurrency=_int("BENCH_SEED_CONCURRENCY", 8),
            keep_database=_flag("BENCH_KEEP_DATABASE", False),
            log_levels=_levels("BENCH_LOG_LEVELS", ("WARNING", "INFO")),
            floor=_flag("BENCH_FLOOR", True),
            cpu=_flag("BENCH_CPU", True),
        )
        if config.duration_s < 1 or config.connections < 1 or config.threads < 1:
            raise BenchError("BENCH_DURATION, BENCH_CONNECTIONS and BENCH_THREADS must be >= 1")
        if config.threads > config.connections:
            raise BenchError("BENCH_THREADS must not exceed BENCH_CONNECTIONS")
        return config

    def wants(self, scenario: str) -> bool:
        return self.only is None or scenario in self.only
