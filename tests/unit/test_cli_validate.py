"""`reconciler validate`: summary line, one problem per line, exit codes, JSON output."""

import json
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import main as cli
from tests.helpers import errors, extension, load, reconciler, write_repo

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_example_repo_is_valid() -> None:
    result = CliRunner().invoke(cli.main, ["validate", str(REPO_ROOT / "manifests")])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{REPO_ROOT / 'manifests'}/deployments/blue.yaml:6: app_insights_enabled: note: "
        "accepted, not used: this reconciler sends no telemetry to Application Insights (the "
        "router's metrics are on its /metrics)\n"
        f"{REPO_ROOT / 'manifests'} is valid: 1 extension, 3 instance types, 2 jobs, "
        "2 deployments, 1 endpoint\n"
    )


def broken(tmp_path: Path) -> Path:
    return write_repo(
        tmp_path / "broken-repo",
        {
            "infra/ext.yaml": extension("enableTraining: true\ninstallVolcanno: false"),
            "jobs/train.yml": """
                $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
                command: python train.py
                environment:
                  docker:
                    image: python
                compute: azureml:azureml-extension
                resources:
                  instance_type: gpu-big
                """,
        },
    )


def test_every_problem_then_a_count_and_exit_1(tmp_path: Path, monkeypatch: object) -> None:
    broken(tmp_path)
    result = reconciler("validate", "broken-repo/", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "broken-repo/infra/ext.yaml:9: spec.config.installVolcanno: unknown setting "
        "(did you mean installVolcano?)",
        "broken-repo/jobs/train.yml:8: resources.instance_type: no instance type named "
        "'gpu-big' (known: defaultinstancetype)",
        "2 problems",
    ]


def test_json_output_lists_problems(tmp_path: Path) -> None:
    root = broken(tmp_path)
    result = CliRunner().invoke(cli.main, ["validate", str(root), "--output", "json"])
    assert result.exit_code == 1
    problems = json.loads(result.output)
    assert [(p["line"], p["field"], p["severity"]) for p in problems] == [
        (9, "spec.config.installVolcanno", "error"),
        (8, "resources.instance_type", "error"),
    ]
    assert problems[0]["file"] == f"{root}/infra/ext.yaml"


def test_warnings_are_marked_and_do_not_fail(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"e.yaml": extension("enableTraining: true\nsslCname: x")})
    result = CliRunner().invoke(cli.main, ["validate", str(root)])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{root}/e.yaml:9: spec.config.sslCname: warning: has no effect: it applies to "
        "inference, which this extension does not enable",
        f"{root} is valid: 1 extension, 0 instance types, 0 jobs, 0 deployments, 0 endpoints "
        "(1 warning)",
    ]


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_a_single_file_can_be_validated(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"e.yaml": extension("enableTraining: true")})
    result = CliRunner().invoke(cli.main, ["validate", str(root / "e.yaml")])
    assert result.exit_code == 0, result.output


def test_a_manifest_without_its_spec_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    # Found by the Hypothesis property test: the Job schema was applied to a missing `spec`.
    write_repo(tmp_path, {"a.yaml": "kind: Job\n"})
    assert errors(load(tmp_path)) == [
        f"{tmp_path}/a.yaml:1: apiVersion: required field is missing",
        f"{tmp_path}/a.yaml:1: metadata: required field is missing",
        f"{tmp_path}/a.yaml:1: spec: required field is missing",
    ]
