"""The tables `make bench` prints, and whether the budgets were met."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.bench.scenarios import Budget
from tests.bench.wrk import LoadResult

# The scale sweep's budget: requests/s may fall by at most this fraction.
SWEEP_MAX_DROP = 0.20


@dataclass
class Row:
    name: str
    budget: Budget | None
    rest: LoadResult
    grpc: LoadResult | None = None
    sql_per_request: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def budget_met(self) -> bool | None:
        if self.budget is None:
            return None
        clean = self.rest.non_2xx == 0 and self.rest.socket_errors == 0
        return clean and self.budget.met(self.rest.rps, self.rest.p99_ms)

    def verdict(self) -> str:
        met = self.budget_met
        if met is None:
            return "no budget"
        if met:
            return "met"
        assert self.budget is not None
        misses = []
        if self.rest.rps < self.budget.min_rps:
            misses.append(f"req/s < {self.budget.min_rps:g}")
        if self.rest.p99_ms > self.budget.max_p99_ms:
            misses.append(f"p99 > {self.budget.max_p99_ms:g} ms")
        if self.rest.non_2xx or self.rest.socket_errors:
            misses.append("errors")
        return "NOT MET (" + ", ".join(misses) + ")"


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


def main_table(rows: list[Row]) -> str:
    header = [
        "scenario",
        "req/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "SQL/req",
        "gRPC req/s",
        "REST/gRPC",
        "budget",
        "budget met",
    ]
    cells = []
    for row in rows:
        grpc = row.grpc
        budget = (
            f">= {_num(row.budget.min_rps)}/s, p99 <= {row.budget.max_p99_ms:g} ms"
            if row.budget
            else "-"
        )
        cells.append(
            [
                row.name,
                _num(row.rest.rps),
                _num(row.rest.p50_ms, 1),
                _num(row.rest.p99_ms, 1),
                str(row.rest.non_2xx + row.rest.socket_errors),
                "-" if row.sql_per_request is None else f"{row.sql_per_request:g}",
                _num(grpc.rps) if grpc else "-",
                f"{row.rest.rps / grpc.rps:.2f}" if grpc and grpc.rps else "-",
                budget,
                row.verdict(),
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
            "met" if row.budget_met else "NOT MET",
        ]
        for row in rows
    ]
    return _table(header, cells)
