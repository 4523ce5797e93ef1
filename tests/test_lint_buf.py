""".ci/buf-lint, the buf step of `make lint`: skips with a notice when buf cannot run, except in CI.

The real script runs in a subprocess. Where npm's answer matters it is either the real npm against
a closed port (what an unreachable registry looks like) or, to see that a lint result passes
through, small stand-ins for npm and npx on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from libs.embedded import free_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "buf-lint"
# What the script needs besides npm/npx; linked into a PATH of their own.
TOOLS = ("bash", "dirname", "timeout", "env")


def tool_dir(tmp_path: Path, *, npm_ping_exit: int | None, npx_exit: int | None) -> Path:
    """A PATH directory with the basic tools and, unless None, stand-in npm and npx."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    if npm_ping_exit is not None:
        write_tool(bin_dir / "npm", f'[ "$1" = ping ] && exit {npm_ping_exit}\nexit 99\n')
    if npx_exit is not None:
        log = tmp_path / "npx.args"
        write_tool(bin_dir / "npx", f'echo "$@" > {log}\nexit {npx_exit}\n')
    return bin_dir


def write_tool(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def run(env_path: str, *, ci: bool, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env.update(PATH=env_path, **extra)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs the real npm")
@pytest.mark.parametrize("ci", [False, True])
def test_an_unreachable_registry_is_noticed_within_seconds(ci: bool) -> None:
    closed = f"http://127.0.0.1:{free_port()}/"
    started = time.monotonic()
    result = run(os.environ["PATH"], ci=ci, npm_config_registry=closed)
    elapsed = time.monotonic() - started

    assert elapsed < 15, elapsed  # npm's own retries took 71 s before
    if ci:
        assert result.returncode == 1, result
        assert "buf lint: cannot run: npm registry unreachable" in result.stderr
    else:
        assert result.returncode == 0, result
        assert "buf lint: SKIPPED: npm registry unreachable" in result.stdout


@pytest.mark.parametrize("ci", [False, True])
def test_without_npx_it_skips_except_in_ci(tmp_path: Path, ci: bool) -> None:
    result = run(str(tool_dir(tmp_path, npm_ping_exit=None, npx_exit=None)), ci=ci)

    if ci:
        assert result.returncode == 1, result
        assert "npx/npm not found" in result.stderr
    else:
        assert result.returncode == 0, result
        assert "buf lint: SKIPPED: npx/npm not found" in result.stdout


@pytest.mark.parametrize("npx_exit", [0, 1])
def test_with_a_registry_buf_lint_runs_and_its_result_counts(tmp_path: Path, npx_exit: int) -> None:
    result = run(str(tool_dir(tmp_path, npm_ping_exit=0, npx_exit=npx_exit)), ci=False)

    assert (tmp_path / "npx.args").read_text().split() == ["--yes", "@bufbuild/buf@1", "lint"]
    assert result.returncode == npx_exit, result
    assert ("buf lint: clean" in result.stdout) is (npx_exit == 0)
    assert "SKIPPED" not in result.stdout
