"""What this copy of the package is: its version and the git commit it was built from.

`reconciler --version` and the loop's `build_info` metric read it. The commit comes from one of
two places, depending on how the package was installed:

- a wheel (and the project's image, which installs one) carries it in the file `COMMIT` inside
  the package, written there at build time by the hatch build hook `hatch_build.py` (from git,
  or from `RECONCILER_COMMIT` where the build has no `.git`, as in the Dockerfile);
- a checkout (an editable install, or `PYTHONPATH`) has no such file: git is asked, at run time
  and only when the commit is wanted, since the checkout's HEAD moves under a running editable
  install.

Neither: the commit is unknown (None), never an error. Only the standard library is imported
here, nothing of the package: `--version` must stay fast, and the build hook loads this file on
its own, from a source tree that is not importable as a package.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# The file the build hook writes into the wheel (hatch_build.py names the same path).
COMMIT_FILE = "COMMIT"
_PACKAGE = Path(__file__).resolve().parent


def commit(package: Path = _PACKAGE) -> str | None:
    """The full hash of the commit `package` was built from, or None when nothing says."""
    built = package / COMMIT_FILE
    if built.is_file():
        return built.read_text().strip() or None
    # Only the checkout the package sits in: asked from a folder inside another repository
    # (a virtualenv in a project's tree), git would answer with that repository's commit.
    if (package.parent / ".git").exists():
        return checkout_commit(package.parent)
    return None


def checkout_commit(root: Path) -> str | None:
    """HEAD of the git checkout at `root` (None without git, or when git refuses)."""
    try:
        asked = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    head = asked.stdout.strip()
    return head if asked.returncode == 0 and head else None


def version_line(version: str, found: str | None) -> str:
    """What `reconciler --version` prints: `reconciler 0.1.0 (commit 1a2b3c4)`."""
    shown = f"commit {found[:7]}" if found else "commit unknown"
    return f"reconciler {version} ({shown})"
