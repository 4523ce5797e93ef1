"""Dashboards and alerts as code (deploy/observability, the production overlay's monitoring.yaml):
every metric a rule or a dashboard panel queries is one the code exports, with labels it has;
the PrometheusRule carries exactly the plain rules file's groups; `promtool` checks the rules and
runs their unit tests (deploy/observability/prometheus-rules.test.yaml) when it is installed
(Debian's `prometheus` package ships it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase

from libs import metrics

ROOT = Path(__file__).resolve().parent.parent
OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "prometheus-rules.yaml"
RULE_TESTS = OBSERVABILITY / "prometheus-rules.test.yaml"
DASHBOARD = OBSERVABILITY / "grafana" / "courseplatform.json"
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "le"}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip

pytestmark = pytest.mark.unit


def exported() -> dict[str, set[str]]:
    """Every series name the code exports -> its label names."""
    names: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        labels = set(value._labelnames)
        kind = value._type
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",),
        }[kind]
        for suffix in suffixes:
            names[value._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    names[metrics.POOL_METRIC] = {"service", "state"}
    names[metrics.POOL_SIZE_METRIC] = {"service"}
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    for family in registry.collect():
        for sample in family.samples:
            names[sample.name] = set()
    names["up"] = set()  # Prometheus's own, per target
    return names


def queried(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names it is filtered or grouped by) for each selector in `expr`."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # no identifiers from inside strings
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    grouped = set()
    for match in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", text):
        grouped |= {label.strip() for label in match.group(1).split(",") if label.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = []
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?", text):
        name, matchers, call = match.group(1), match.group(2), match.group(3)
        if call or name.lower() in PROMQL_WORDS or name.startswith("__"):
            continue
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers or ""))
        found.append((name, labels))
    return [(name, labels) for name, labels in found] + [("", grouped)]


def check_expr(expr: str, where: str) -> None:
    names = exported()
    selectors = queried(expr)
    used = [(name, labels) for name, labels in selectors if name]
    assert used, f"{where}: no metric found in {expr!r}"
    known_labels = TARGET_LABELS.union(*(names.get(name, set()) for name, _ in used))
    for name, labels in used:
        assert name in names, f"{where}: {name} is not exported by the code"
        unknown = labels - names[name] - TARGET_LABELS
        assert not unknown, f"{where}: {name} has no label {unknown}"
    grouped = selectors[-1][1]
    assert grouped <= known_labels, f"{where}: grouped by unknown labels {grouped - known_labels}"


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


ISSUE_ALERTS = {
    "CourseplatformGatewayErrorRate",
    "CourseplatformGrpcErrorRate",
    "CourseplatformGatewayLatencyP99",
    "CourseplatformGrpcLatencyP99",
    "CourseplatformOutboxStuck",
    "CourseplatformMailDeadLettered",
    "CourseplatformMailLatencyP95",
    "CourseplatformConsumerLagGrowing",
    "CourseplatformTargetDown",
    "CourseplatformNotifierDegraded",
}


def test_every_rule_queries_exported_metrics_and_labels() -> None:
    alerts = [rule for group in rules()["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in alerts} == ISSUE_ALERTS
    for rule in alerts:
        check_expr(rule["expr"], rule["alert"])
        assert rule["labels"]["severity"] in ("page", "warn"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_every_dashboard_panel_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(panels) >= 20
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            check_expr(target["expr"], panel["title"])
    covered = {name for p in panels for t in p["targets"] for name, _ in queried(t["expr"]) if name}
    # Every family the code exports shows somewhere on the dashboard.
    families = {name for name, _labels in metrics.metric_names()}
    missing = {
        family
        for family in families
        if not any(name == family or name.startswith(family + "_") for name in covered)
    }
    assert not missing, f"not on the dashboard: {missing}"


def test_the_checker_catches_unknown_metrics_and_labels() -> None:
    with pytest.raises(AssertionError, match="not exported"):
        check_expr("rate(courseplatform_http_request_total[5m])", "typo")
    with pytest.raises(AssertionError, match="no label"):
        check_expr('courseplatform_outbox_unpublished{service="x"}', "label typo")
    with pytest.raises(AssertionError, match="grouped by unknown"):
        check_expr("sum by (user_id) (courseplatform_mail_sent_total)", "grouping typo")


def test_the_prometheus_rule_carries_the_rules_file_word_for_word() -> None:
    (monitoring,) = [
        doc
        for doc in yaml.safe_load_all(
            (ROOT / "deploy/kubernetes/components/production/monitoring.yaml").read_text()
        )
        if doc and doc["kind"] == "PrometheusRule"
    ]
    assert monitoring["spec"]["groups"] == rules()["groups"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (apt-get install prometheus): rules parsed only")
    return found


def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=OBSERVABILITY,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
