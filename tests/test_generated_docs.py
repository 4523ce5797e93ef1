"""`make docs` output is generated, never committed: git ignores it, so no stale copy exists."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def test_make_docs_writes_an_ignored_file() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "> docs/asyncapi.json" in makefile
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", "docs/asyncapi.json"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "docs/asyncapi.json is not git-ignored"
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "docs/asyncapi.json"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert tracked.returncode != 0, "docs/asyncapi.json is committed"
