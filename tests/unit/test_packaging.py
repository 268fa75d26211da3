"""The built wheel is complete: installed (not editable) in a fresh venv, it renders the example.

`schemas/` and `templates/` sit at the repository's top level, outside the package; the build
copies them into the wheel (pyproject's force-include) and `reconciler.data_dir` finds them there.
This builds the wheel from the checkout, installs it into a new virtual environment and runs
`reconciler render manifests/` from it, outside the checkout, so a data file the wheel lacks (or a
lookup that only works from a checkout) fails here; and the wheel says the commit it was built
from, which the build hook wrote into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import reconciler
from tests import helpers, tools


def run(
    *command: str | Path, cwd: Path, isolated: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `command`; `isolated` drops PYTHONPATH, which would put a checkout before the venv."""
    env = {k: v for k, v in os.environ.items() if not isolated or k != "PYTHONPATH"}
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_installed_wheel_carries_its_data_and_renders_the_example(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = (sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist)
    run(*build, cwd=tools.ROOT)
    (wheel,) = dist.glob("mlext_reconciler-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in (tools.ROOT / "schemas").glob("*.json"):
        assert f"reconciler/schemas/{schema.name}" in names
    for template in (tools.ROOT / "templates").rglob("*.j2"):
        assert f"reconciler/templates/{template.relative_to(tools.ROOT / 'templates')}" in names

    # The venv sees this interpreter's packages for the dependencies, but its own copy of
    # reconciler (from the wheel) comes first on its path; the check below proves which ran.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    install = (python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel)
    run(*install, cwd=tmp_path, isolated=True)
    probe = "import reconciler; print(reconciler.data_dir('templates'))"
    where = run(python, "-c", probe, cwd=tmp_path, isolated=True)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    render = (venv / "bin" / "reconciler", "render", helpers.EXAMPLE)
    installed = run(*render, cwd=tmp_path, isolated=True)
    from_checkout = run(sys.executable, "-m", "reconciler", "render", helpers.EXAMPLE, cwd=tmp_path)
    assert "kind: Deployment" in installed.stdout
    assert installed.stdout == from_checkout.stdout

    # The commit it was built from, written into the wheel by the build hook (hatch_build.py):
    # the installed copy has no checkout to ask.
    head = run("git", "rev-parse", "HEAD", cwd=tools.ROOT).stdout.strip()
    assert zipfile.ZipFile(wheel).read("reconciler/COMMIT").decode().strip() == head
    shown = run(venv / "bin" / "reconciler", "--version", cwd=tmp_path, isolated=True).stdout
    assert shown == f"reconciler {reconciler.__version__} (commit {head[:7]})\n"
