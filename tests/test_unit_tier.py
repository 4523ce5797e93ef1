"""The `make unit` tier: a test marked unit that needs PostgreSQL or Redis is refused at collection.

A throwaway test module runs in a pytest subprocess that uses this suite's conftest, so the
refusal is seen exactly as `make unit` would show it, and nothing of the suite's servers starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PYTEST_INI = """[pytest]
addopts = --strict-markers -p no:cacheprovider
markers =
    unit: no servers
    integration: real servers
"""
CONFTEST = "from tests.conftest import *  # noqa: F403\n"
MISPLACED = """
import pytest

@pytest.mark.unit
def test_pure():
    pass

@pytest.mark.unit
def test_wants_a_gateway(client):
    pass
"""
WELL_MARKED = """
import pytest

@pytest.mark.unit
def test_pure():
    pass

def test_wants_a_gateway(client):
    pass

def test_wants_redis(redis):
    pass
"""
# Would any fixture try the database or Redis, it would fail on these closed ports.
UNREACHABLE = {
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
    "REDIS_URL": "redis://127.0.0.1:9/0",
}


def run_pytest(tmp_path: Path, tests: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(tests)
    env = {**os.environ, **UNREACHABLE, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        # Its own basetemp: a pytest run tightens /tmp/pytest-of-<user> to 0700, which would cut
        # off the embedded PostgreSQL (run as user pgserver) of a test running beside it.
        [sys.executable, "-m", "pytest", "-q", "--basetemp", str(tmp_path / "tmp"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Checked on every collected test before `-m` selects, so no selection hides a misplaced one.
@pytest.mark.parametrize("selection", [["-m", "unit"], ["-m", "integration"], []])
def test_a_unit_test_needing_servers_is_refused_before_anything_runs(
    tmp_path: Path, selection: list[str]
) -> None:
    result = run_pytest(tmp_path, MISPLACED, *selection)

    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result
    output = result.stdout + result.stderr
    assert "test_sample.py::test_wants_a_gateway needs admin_database_url, redis_url" in output
    assert "test_pure needs" not in output
    assert "passed" not in output


def test_unit_runs_only_its_own_tests_and_the_rest_are_integration(tmp_path: Path) -> None:
    unit = run_pytest(tmp_path, WELL_MARKED, "-m", "unit")
    assert unit.returncode == pytest.ExitCode.OK, unit
    assert "1 passed, 2 deselected" in unit.stdout  # no fixture reached the closed ports

    integration = run_pytest(tmp_path, WELL_MARKED, "-m", "integration", "--collect-only")
    assert integration.returncode == pytest.ExitCode.OK, integration
    assert "test_wants_a_gateway" in integration.stdout
    assert "test_wants_redis" in integration.stdout
    assert "test_pure" not in integration.stdout
    assert "2/3 tests collected (1 deselected)" in integration.stdout
