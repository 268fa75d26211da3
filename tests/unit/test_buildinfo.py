"""`reconciler --version`: the version and the commit it was built from, wherever it runs.

From a checkout git is asked; a wheel carries the commit (`test_packaging` runs the installed
wheel's `--version`); with neither, the commit is unknown, which is said, not a crash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from reconciler import __version__, buildinfo
from tests import tools


def version(cwd: Path, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "--version"],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def head() -> str:
    asked = ["git", "-C", str(tools.ROOT), "rev-parse", "HEAD"]
    return subprocess.run(asked, capture_output=True, text=True, check=True).stdout.strip()


def test_from_a_checkout_the_version_names_its_head() -> None:
    shown = version(tools.ROOT)
    assert shown == f"reconciler {__version__} (commit {head()[:7]})\n"


def test_without_git_the_commit_is_unknown(tmp_path: Path) -> None:
    assert version(tools.ROOT, PATH=str(tmp_path)) == f"reconciler {__version__} (commit unknown)\n"


def test_a_copy_outside_any_checkout_does_not_ask_the_repository_around_it(
    tmp_path: Path,
) -> None:
    """A package in a folder of another repository (a virtualenv in a project's tree) must not
    take that repository's commit for its own."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit",
         "-q", "--allow-empty", "-m", "other"],
        check=True,
    )  # fmt: skip
    site = tmp_path / "venv" / "site-packages"
    shutil.copytree(tools.ROOT / "reconciler", site / "reconciler")
    assert buildinfo.commit(site / "reconciler") is None
    assert version(site, PYTHONPATH=str(site)).endswith("(commit unknown)\n")


def test_the_commit_a_build_wrote_wins_over_git(tmp_path: Path) -> None:
    package = tmp_path / "reconciler"
    package.mkdir()
    (tmp_path / ".git").mkdir()  # would be asked, and fail: the file answers first
    (package / buildinfo.COMMIT_FILE).write_text("1a2b3c4d5e6f\n")
    assert buildinfo.commit(package) == "1a2b3c4d5e6f"
    assert buildinfo.version_line("0.4.0", "1a2b3c4d5e6f") == "reconciler 0.4.0 (commit 1a2b3c4)"
