"""The controller's Helm chart: what the generator writes now, and the same objects as `install`.

`helm template` (the real helm, built from its Go module by tests/tools.py) renders the committed
chart with values and must print exactly what `reconciler install` prints for the same options,
less the Namespace (Helm's to make); `helm lint` passes it, and the chart refuses what `install`
refuses (no repo, no extension, an unknown value).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler import objects
from reconciler.cli import main as cli
from reconciler.gitops import chart, install
from tests import tools

CHART = tools.ROOT / chart.DIRECTORY
REPO_URL = "https://git.example.com/ml/manifests.git"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools.helm(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def normalised(objs: list[objects.Object]) -> list[objects.Object]:
    """The objects by key, each role's rules in one order (their order means nothing)."""
    for obj in objs:
        if "rules" in obj:
            obj["rules"] = sorted(obj["rules"], key=json.dumps)
    return sorted(objs, key=lambda o: str(objects.key(o)))


def test_the_committed_chart_is_what_the_generator_writes_now() -> None:
    written = chart.files(install.Options(repo=""))
    on_disk = {str(p.relative_to(CHART)): p.read_text() for p in CHART.rglob("*") if p.is_file()}
    assert on_disk == written, "run: reconciler install --chart charts/mlext-reconciler"


def test_install_chart_writes_it_with_the_options_as_defaults(tmp_path: Path) -> None:
    args = ["install", "--chart", str(tmp_path), "--repo", REPO_URL, "--extension", "ml"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert (values["repo"], values["extensions"]) == (REPO_URL, ["ml"])
    assert values["image"] == install.default_image()
    assert set(result.output.split()) == {
        str(tmp_path / name) for name in chart.files(install.Options(repo=""))
    }


@pytest.mark.parametrize(
    "options",
    [
        install.Options(repo=REPO_URL, namespace="gitops"),
        install.Options(
            repo=REPO_URL,
            namespace="team-a",
            image="registry.example.com/reconciler:dev",
            git_secret="deploy-key",
            branch="release",
            path="clusters/prod",
            interval="5m",
            extensions=("ml-b", "ml-a", "ml-b"),
            decryption_secret="sops-age",
            adopt=True,
            notifications_secret="team-a-notifications",
        ),
    ],
)
def test_helm_template_prints_what_install_prints(options: install.Options) -> None:
    sets = {
        "repo": options.repo,
        "image": options.image or install.default_image(),
        "gitSecret": options.git_secret,
        "branch": options.branch,
        "path": options.path,
        "interval": options.interval,
        "decryptionSecret": options.decryption_secret,
        "adopt": str(options.adopt).lower(),
        "notificationsSecret": options.notifications_secret,
        "extensions": "{" + ",".join(options.extensions) + "}",
    }
    args = [f"{k}={v}" for k, v in sets.items()]
    result = helm(
        "template", "r", str(CHART), "--namespace", options.namespace, "--include-crds",
        *[x for a in args for x in ("--set", a)],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    templated = [o for o in yaml.safe_load_all(result.stdout) if o]
    printed = [o for o in install.manifests(options) if o["kind"] != "Namespace"]
    assert normalised(templated) == normalised(printed)


def test_helm_lint_passes_the_chart() -> None:
    result = helm("lint", "--strict", str(CHART), "--set", f"repo={REPO_URL}")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        ([], "set repo"),
        ([f"repo={REPO_URL}", "extensions=null"], "extensions"),
        ([f"repo={REPO_URL}", "brnach=main"], "brnach"),
        ([f"repo={REPO_URL}", "adopt=yes please"], "adopt"),
    ],
)
def test_the_chart_refuses_what_install_refuses(sets: list[str], says: str) -> None:
    result = helm("template", "r", str(CHART), *[x for s in sets for x in ("--set", s)])
    assert result.returncode != 0
    assert says in result.stderr


def test_chart_with_a_namespace_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli.main, ["install", "--chart", "x", "-n", "other"])
    assert result.exit_code == 2
    assert "release's namespace" in result.output
