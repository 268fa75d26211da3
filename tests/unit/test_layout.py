"""The package's layout is a contract: layers checked by import-linter, data at the top level.

`lint-imports` runs in the README's test command; these tests also show that it really catches a
broken layer (a linter that passed everything would fail here), and that the tree keeps the shape
docs/architecture.md describes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tools

PACKAGE = tools.ROOT / "reconciler"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` run from `root`, which puts `root`'s own copy of the package first."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of_the_tree(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(tools.ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, statement: str) -> None:
    text = module.read_text()
    anchor = "from __future__ import annotations\n"
    assert anchor in text
    module.write_text(text.replace(anchor, f"{anchor}\n{statement}\n", 1))


def test_the_layer_contracts_hold_for_the_tree() -> None:
    result = lint_imports(tools.ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("model/documents.py", "from reconciler import kube", "model and render are pure"),
        ("render/templating.py", "from reconciler.engine import executor", "Layers of the flow"),
        ("router/balancer.py", "from reconciler.engine import plans", "router stands on its own"),
        ("engine/plans.py", "import kubernetes", "Only the kube edge"),
        ("model/settings.py", "from reconciler.cli import common", "Layers of the flow"),
        ("engine/executor.py", "from reconciler.printers import events", "Layers of the flow"),
        ("printers/plans.py", "from reconciler.gitops import controller", "Layers of the flow"),
    ],
)
def test_a_broken_contract_fails_lint_imports(
    tmp_path: Path, module: str, statement: str, contract: str
) -> None:
    root = copy_of_the_tree(tmp_path)
    add_import(root / "reconciler" / module, statement)
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert any(contract in line for line in broken), result.stdout


def test_at_most_eight_modules_sit_directly_in_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert stages == {
        "cli", "model", "render", "engine", "printers", "gitops", "router", "localcluster"
    }  # fmt: skip


def test_schemas_and_templates_sit_at_the_top_level_not_in_the_package() -> None:
    assert sorted(p.stem for p in (tools.ROOT / "schemas").glob("*.json"))
    assert list((tools.ROOT / "templates").rglob("*.j2"))
    assert not (PACKAGE / "schemas").exists()
    assert not (PACKAGE / "templates").exists()
