"""constraints.txt pins exactly what pyproject.toml pulls in, at the versions installed and
tested here (tests/constraints.py), and the check notices each way of falling out of step."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.constraints import (
    CONSTRAINTS,
    closure,
    problems,
    read_pins,
    render,
    top_level_requirements,
)

pytestmark = pytest.mark.unit


def test_constraints_txt_is_in_step_with_pyproject_and_the_venv() -> None:
    assert problems(read_pins(), closure(top_level_requirements())) == []


def test_every_runtime_dependency_is_pinned_with_its_extras_dependencies() -> None:
    pins = read_pins()
    for requirement in top_level_requirements():
        assert pins.get(requirement.name.lower()), requirement
    # Extras are followed: uvicorn[standard] brings uvloop and httptools, psycopg[binary] its
    # binary package.
    assert {"uvloop", "httptools", "psycopg-binary"} <= set(pins)


def test_the_check_names_each_kind_of_drift(tmp_path: Path) -> None:
    found = closure(top_level_requirements())
    pins = read_pins()

    unpinned = dict(pins)
    del unpinned["orjson"]
    assert any("orjson is required" in issue for issue in problems(unpinned, found))

    outside = {**pins, "fastapi": "0.1.0"}
    issues = problems(outside, found)
    assert any("fastapi==0.1.0 is outside fastapi" in issue for issue in issues)
    assert any("fastapi" in issue and "is installed but" in issue for issue in issues)

    stale = {**pins, "left-pad": "1.0"}
    assert problems(stale, found) == ["left-pad==1.0 is pinned but nothing requires it"]

    # A dependency added to pyproject.toml but not installed (nor pinned) is named too.
    pyproject = tmp_path / "pyproject.toml"
    text = (CONSTRAINTS.parent / "pyproject.toml").read_text()
    pyproject.write_text(
        text.replace("dependencies = [\n", 'dependencies = [\n    "left-pad>=1",\n', 1)
    )
    added = closure(top_level_requirements(pyproject))
    assert any(
        issue.startswith("left-pad (wanted by pyproject.toml)") for issue in problems(pins, added)
    )
    assert added.specifiers["left-pad"][0][1] == Requirement("left-pad>=1")


def test_the_file_is_what_make_constraints_writes() -> None:
    assert CONSTRAINTS.read_text() == render(read_pins())


def test_the_image_installs_everything_through_the_constraints() -> None:
    dockerfile = (CONSTRAINTS.parent / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if line.startswith("RUN pip install")]
    assert len(installs) == 2  # the build stage's grpcio-tools, the runtime's project
    assert all("-c constraints.txt" in line for line in installs), installs
    assert dockerfile.count("COPY pyproject.toml constraints.txt ./") == 2
