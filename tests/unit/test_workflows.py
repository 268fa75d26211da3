"""The GitHub workflows (.github/workflows): valid by actionlint, and wired to this project.

actionlint checks syntax, expressions, action inputs and the `run:` scripts' use of contexts; a
broken workflow is checked too, so a linter that silently accepts everything would fail here.
"""

from __future__ import annotations

import subprocess

import yaml

from reconciler import __version__
from reconciler.engine import revisiondiff
from reconciler.gitops import chart, install
from reconciler.printers import revisiondiff as printed
from tests import tools

WORKFLOWS = tools.ROOT / ".github" / "workflows"


def lint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools.actionlint(), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", *args],
        cwd=tools.ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def workflow(name: str) -> dict[str, object]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_workflows_exist_and_pass_actionlint() -> None:
    expected = {"ci.yml", "pr-diff.yml", "e2e-kind.yml", "release.yml"}
    assert {p.name for p in WORKFLOWS.glob("*.yml")} >= expected
    result = lint(*sorted(str(p) for p in WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow() -> None:
    broken = "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
    broken += "      - run: echo ${{ github.evnt.number }}\n"
    result = lint("-", stdin=broken)
    assert result.returncode == 1
    assert "evnt" in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    steps = workflow("ci.yml")["jobs"]["test"]["steps"]  # type: ignore[index]
    # As root, with the runner's environment (the real nodes' host routes need it).
    assert any(str(step.get("run", "")).endswith("bash .ci/run") for step in steps)
    readme = (tools.ROOT / "README.md").read_text()
    ci_script = (tools.ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_script in readme


def test_the_pr_comment_is_found_again_by_the_marker_the_diff_writes() -> None:
    text = (WORKFLOWS / "pr-diff.yml").read_text()
    assert f'const marker = "{printed.COMMENT_MARKER}";' in text
    assert "reconciler diff manifests --base" in text
    empty = revisiondiff.RevisionDiff("a" * 40, "b" * 40)
    assert printed.markdown(empty).startswith(printed.COMMENT_MARKER)


def test_the_release_pushes_the_image_install_names_and_publishes_without_a_token() -> None:
    release = workflow("release.yml")
    assert release[True] == {"push": {"tags": ["v*"]}}  # YAML 1.1 reads the key `on` as True
    assert release["permissions"] == {"contents": "read"}
    # A release of version v pushes IMAGE:v, which is what `reconciler install` runs by default.
    assert f"{release['env']['IMAGE']}:{__version__}" == install.default_image()  # type: ignore[index]
    jobs: dict[str, dict[str, object]] = release["jobs"]  # type: ignore[assignment]
    uses = {job: [str(s.get("uses", "")) for s in j["steps"]] for job, j in jobs.items()}  # type: ignore[attr-defined]
    assert any(u.startswith("docker/build-push-action@") for u in uses["image"])
    assert any(u.startswith("actions/attest-sbom@") for u in uses["image"])
    assert any(u.startswith("sigstore/cosign-installer@") for u in uses["image"])
    # Least privilege: only the publishing jobs may mint an OIDC token; PyPI needs nothing else.
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
    assert uses["pypi"][-1] == "pypa/gh-action-pypi-publish@release/v1"
    assert "with" not in jobs["pypi"]["steps"][-1]  # type: ignore[index]  # no password: trusted publishing
    assert {"id-token", "packages"} <= set(jobs["image"]["permissions"])  # type: ignore[arg-type]
    assert "permissions" not in jobs["dist"] and "permissions" not in jobs["version"]
    pushed = str(jobs["chart"]["steps"][-1]["run"])  # type: ignore[index]
    assert f"helm package {chart.DIRECTORY} " in pushed
