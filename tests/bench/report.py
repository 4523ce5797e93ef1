"""The tables `make bench` prints, and whether the budgets were met."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.bench.cpu import MACHINE, ordered_groups
from tests.bench.scenarios import Budget
from tests.bench.wrk import LoadResult

# The scale sweep's budget: requests/s may fall by at most this fraction of the base rate.
SWEEP_MAX_DROP = 0.10
# What INFO logging may cost against WARNING, in requests/s, on every scenario.
LOG_MAX_COST = 0.10


@dataclass
class Row:
    name: str
    budget: Budget | None
    # None: not measured (`skipped` says why).
    rest: LoadResult | None
    grpc: LoadResult | None = None
    sql_per_request: float | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    # CPU ms per request by process group (tests/bench/cpu.py).
    cpu: dict[str, float] = field(default_factory=dict)

    def budget_met(self, floor_tps: float | None) -> bool | None:
        """None: nothing to judge (no budget, not measured, or a fraction without a floor)."""
        if self.budget is None or self.rest is None:
            return None
        required = self.budget.required_rps(floor_tps)
        if required is None:
            return None
        clean = self.rest.non_2xx == 0 and self.rest.socket_errors == 0
        return clean and self.rest.rps >= required and self.rest.p99_ms <= self.budget.max_p99_ms

    def verdict(self, floor_tps: float | None) -> str:
        if self.rest is None:
            return f"n/a: {self.skipped}"
        if self.budget is None:
            return "no budget"
        required = self.budget.required_rps(floor_tps)
        if required is None:
            return "n/a: no pgbench floor measured"
        if self.budget_met(floor_tps):
            return "met"
        misses = []
        if self.rest.rps < required:
            misses.append(f"req/s {self.rest.rps / required - 1:+.0%} (needs {_num(required)}/s)")
        if self.rest.p99_ms > self.budget.max_p99_ms:
            misses.append(f"p99 +{self.rest.p99_ms - self.budget.max_p99_ms:.1f} ms")
        if self.rest.non_2xx or self.rest.socket_errors:
            misses.append(f"{self.rest.non_2xx + self.rest.socket_errors} errors")
        return "MISSED: " + ", ".join(misses)


@dataclass
class SweepRow:
    name: str
    small: LoadResult
    large: LoadResult

    @property
    def change(self) -> float:
        return (self.large.rps - self.small.rps) / self.small.rps if self.small.rps else 0.0

    @property
    def budget_met(self) -> bool:
        clean = self.large.non_2xx == 0 and self.large.socket_errors == 0
        return clean and self.change >= -SWEEP_MAX_DROP


@dataclass
class LogRow:
    """One scenario at the quiet level and at the chattier one, in the same run."""

    name: str
    quiet: LoadResult
    loud: LoadResult
    # CPU ms per request of the platform and its database backends at each level (0: unknown).
    quiet_cpu_ms: float = 0.0
    loud_cpu_ms: float = 0.0

    @property
    def cost(self) -> float:
        """The fraction of requests/s the chattier level loses (negative: it was faster)."""
        return 1 - self.loud.rps / self.quiet.rps if self.quiet.rps else 0.0

    @property
    def budget_met(self) -> bool:
        return self.cost <= LOG_MAX_COST


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def main_table(rows: list[Row], floor_tps: float | None) -> str:
    header = [
        "scenario",
        "req/s",
        "of floor",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "SQL/req",
        "gRPC req/s",
        "REST/gRPC",
        "budget",
        "verdict",
    ]
    cells = []
    for row in rows:
        rest, grpc = row.rest, row.grpc
        budget = row.budget.describe() if row.budget else "-"
        if rest is None:
            cells.append([row.name, *(["-"] * 8), budget, row.verdict(floor_tps)])
            continue
        cells.append(
            [
                row.name,
                _num(rest.rps),
                f"{rest.rps / floor_tps:.1%}" if floor_tps else "-",
                _num(rest.p50_ms, 1),
                _num(rest.p99_ms, 1),
                str(rest.non_2xx + rest.socket_errors),
                "-" if row.sql_per_request is None else f"{row.sql_per_request:g}",
                _num(grpc.rps) if grpc else "-",
                f"{rest.rps / grpc.rps:.2f}" if grpc and grpc.rps else "-",
                budget,
                row.verdict(floor_tps),
            ]
        )
    return _table(header, cells)


def sweep_table(rows: list[SweepRow], small_label: str, large_label: str) -> str:
    header = [
        "scenario",
        f"req/s {small_label}",
        f"req/s {large_label}",
        "change",
        f"p99 ms {small_label}",
        f"p99 ms {large_label}",
        f"budget (drop <= {SWEEP_MAX_DROP:.0%})",
    ]
    cells = [
        [
            row.name,
            _num(row.small.rps),
            _num(row.large.rps),
            f"{row.change:+.1%}",
            _num(row.small.p99_ms, 1),
            _num(row.large.p99_ms, 1),
            "met" if row.budget_met else f"MISSED by {-row.change - SWEEP_MAX_DROP:.1%}",
        ]
        for row in rows
    ]
    return _table(header, cells)


def log_table(rows: list[LogRow], quiet: str, loud: str) -> str:
    header = [
        "scenario",
        f"req/s {quiet}",
        f"req/s {loud}",
        f"{loud} cost",
        f"p99 ms {quiet}",
        f"p99 ms {loud}",
        f"CPU ms/req {quiet}",
        f"CPU ms/req {loud}",
        "CPU cost",
        f"budget (cost <= {LOG_MAX_COST:.0%})",
    ]
    cells = [
        [
            row.name,
            _num(row.quiet.rps),
            _num(row.loud.rps),
            f"{row.cost:+.1%}",
            _num(row.quiet.p99_ms, 1),
            _num(row.loud.p99_ms, 1),
            f"{row.quiet_cpu_ms:.2f}" if row.quiet_cpu_ms else "-",
            f"{row.loud_cpu_ms:.2f}" if row.loud_cpu_ms else "-",
            f"{row.loud_cpu_ms / row.quiet_cpu_ms - 1:+.1%}"
            if row.quiet_cpu_ms and row.loud_cpu_ms
            else "-",
            "met" if row.budget_met else f"MISSED by {row.cost - LOG_MAX_COST:.1%}",
        ]
        for row in rows
    ]
    return _table(header, cells)


def platform_cpu_ms(row: Row) -> float:
    """CPU ms per request of the platform's processes and its database backends."""
    return sum(ms for group, ms in row.cpu.items() if group != MACHINE)


def cpu_table(rows: list[Row], cores: int) -> str:
    """CPU ms per request by process; `ours` sums the platform and its database backends, and
    `machine` is every busy core (wrk, the kernel, and whatever else ran meanwhile)."""
    measured = [row for row in rows if row.cpu]
    groups = ordered_groups({group for row in measured for group in row.cpu})
    header = ["scenario", *groups, "ours", MACHINE, f"ceiling on {cores} cores"]
    cells = []
    for row in measured:
        ours = sum(row.cpu.get(group, 0.0) for group in groups)
        machine = row.cpu.get(MACHINE, 0.0)
        cells.append(
            [
                row.name,
                *(f"{row.cpu[group]:.2f}" if group in row.cpu else "-" for group in groups),
                f"{ours:.2f}",
                f"{machine:.2f}",
                f"~{_num(cores * 1000 / ours)}/s" if ours else "-",
            ]
        )
    return _table(header, cells)
