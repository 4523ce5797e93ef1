"""The bench's verdicts (tests/bench/report.py): budgets as fractions of the same run's pgbench
floor, met or missed by how much, the log-level cost, and the request lines wrk replays."""

from __future__ import annotations

import pytest

from tests.bench.config import BenchError
from tests.bench.floor import _TPS
from tests.bench.report import LogRow, Row, SweepRow
from tests.bench.scenarios import Budget
from tests.bench.wrk import HttpRequest, LoadResult

pytestmark = pytest.mark.unit


def load(rps: float, p99_ms: float, errors: int = 0) -> LoadResult:
    return LoadResult(
        requests=int(rps * 10),
        duration_s=10.0,
        non_2xx=errors,
        socket_errors=0,
        p50_ms=p99_ms / 2,
        p99_ms=p99_ms,
    )


def test_a_fraction_budget_follows_the_floor() -> None:
    budget = Budget(30, floor_fraction=0.10)
    assert budget.required_rps(40_000) == pytest.approx(4_000)
    assert budget.required_rps(None) is None
    assert Budget(15, min_rps=3500).required_rps(None) == 3500
    assert budget.describe() == ">= 10% of pgbench -S, p99 <= 30 ms"


def test_verdicts_say_met_or_by_how_much_it_was_missed() -> None:
    budget = Budget(30, floor_fraction=0.10)
    assert Row("a", budget, load(4_100, 20)).verdict(40_000) == "met"
    missed = Row("a", budget, load(1_000, 42.5)).verdict(40_000)
    assert missed == "MISSED: req/s -75% (needs 4,000/s), p99 +12.5 ms"
    assert "1 errors" in Row("a", budget, load(5_000, 10, errors=1)).verdict(40_000)
    assert Row("a", budget, load(5_000, 10)).verdict(None).startswith("n/a")
    assert Row("a", budget, load(5_000, 10)).budget_met(None) is None
    skipped = Row("a", budget, None, skipped="no ETag")
    assert skipped.verdict(40_000) == "n/a: no ETag"
    assert skipped.budget_met(40_000) is None


def test_log_cost_and_sweep_drop_budgets() -> None:
    assert LogRow("a", load(1000, 10), load(920, 10)).budget_met
    costly = LogRow("a", load(1000, 10), load(850, 10))
    assert costly.cost == pytest.approx(0.15)
    assert not costly.budget_met
    assert SweepRow("a", load(1000, 10), load(910, 10)).budget_met
    assert not SweepRow("a", load(1000, 10), load(880, 10)).budget_met


def test_the_floor_is_read_from_pgbench_output() -> None:
    output = (
        "latency average = 0.407 ms\n"
        "initial connection time = 32.527 ms\n"
        "tps = 39353.935735 (without initial connection time)\n"
    )
    found = _TPS.search(output)
    assert found is not None and float(found.group(1)) == pytest.approx(39353.935735)


def test_request_lines_carry_extra_headers_and_refuse_separators() -> None:
    plain = HttpRequest("GET", "/api/courses/1/", "tok")
    assert plain.line() == "GET\t/api/courses/1/\ttok\t\t"
    conditional = HttpRequest("GET", "/x/", None, None, (("If-None-Match", 'W/"1-2"'),))
    assert conditional.line().split("\t")[4] == 'If-None-Match:W/"1-2"'
    with pytest.raises(BenchError):
        HttpRequest("GET", "/a\tb/").line()
