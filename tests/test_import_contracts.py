"""The architecture card's import rules (pyproject.toml [tool.importlinter]) hold, and each one
fails `lint-imports` when a change breaks it.

Each case runs lint-imports on a copy of the source tree with one offending import appended, so
the real configuration judges the real code; import-linter puts its working directory first on
the import path, so the copy is what it reads.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# (file, the import that breaks the rule, the contract that must report it)
BREAKS = [
    ("services/identity/usecases.py", "import services.catalog.store", "Services are independent"),
    ("gateway/auth.py", "import services.identity.domain", "The gateway reaches the services"),
    ("libs/paging.py", "import gateway.errors", "libs serves everyone"),
    ("services/catalog/domain.py", "from libs.roles import ROLE_TO_PROTO", "Domain rules are pure"),
    ("services/learning/domain.py", "import sqlalchemy", "Domain rules are pure"),
    ("services/identity/domain.py", "import libs.settings", "Domain rules are pure"),
    ("services/catalog/domain.py", "import jwt", "Domain rules are pure"),
    ("services/catalog/store.py", "import services.catalog.usecases", "Layers per service"),
    ("services/learning/domain.py", "import services.learning.usecases", "Layers per service"),
    (
        "services/identity/api.py",
        "from services.identity import store",
        "Servicers talk to use cases",
    ),
    ("services/notifier/store.py", "import services.notifier.usecases", "Notifier layers"),
]


def _tree(tmp_path: Path) -> Path:
    for package in ("services", "gateway", "libs"):
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("generated", "__pycache__"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_code_keeps_every_contract() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("path", "offence", "contract"), BREAKS)
def test_a_broken_rule_fails_lint_imports(
    tmp_path: Path, path: str, offence: str, contract: str
) -> None:
    tree = _tree(tmp_path)
    with (tree / path).open("a") as source:
        source.write(f"\n{offence}  # noqa\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
