"""Node selector labels are checked as Kubernetes checks them, with FILE:LINE errors (issue 27,
item 5): a newline, non-ASCII text, a template marker, a bad prefix or a non-string key is an
error in validation instead of reaching the InstanceTypes and workloads the reconciler writes."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.model import labels, problems

LONG = "a" * 64


@pytest.mark.parametrize(
    "key",
    ["pool", "kubernetes.io/os", "node.kubernetes.io/instance-type", "A_b.c-1", "x" * 63],
)
def test_valid_label_keys(key: str) -> None:
    assert labels.key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("bad key\n", "the name must be"),
        ("-pool", "the name must be"),
        (LONG, "the name must be"),
        ("/pool", "the prefix before '/' is empty"),
        ("Bad_Prefix/x", "the prefix must be a DNS subdomain"),
        ("{{ x }}", "the name must be"),
        (1, "must be a string, not int"),
    ],
)
def test_invalid_label_keys(key: object, why: str) -> None:
    found = labels.key_problem(key)
    assert found is not None and why in found


@pytest.mark.parametrize("value", ["", "linux", "a.b_c-1", "x" * 63])
def test_valid_label_values(value: str) -> None:
    assert labels.value_problem(value) is None


@pytest.mark.parametrize("value", ["é", "a b", "line\nbreak", "{{ evil }}", "-x", LONG])
def test_invalid_label_values(value: str) -> None:
    assert labels.value_problem(value) is not None


def test_a_field_path_with_a_newline_stays_on_one_line() -> None:
    assert problems.format_field_path(("nodeSelector", "bad key\n")) == (
        'nodeSelector."bad key\\n"'
    )
    assert (
        problems.format_field_path(("items", 0, "kubernetes.io/os")) == "items[0].kubernetes.io/os"
    )


def test_bad_labels_are_errors_with_their_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "extension.yaml").write_text(
        "apiVersion: gitops.mlext.io/v1alpha1\n"
        "kind: Extension\n"
        "metadata: {name: ext}\n"
        "spec:\n"
        "  clusterType: managedClusters\n"
        "  config:\n"
        "    enableTraining: true\n"
        "    nodeSelector:\n"
        '      "bad key\\n": x\n'
        '      pool: "{{ evil }}"\n'
        "      gpu: ok\n"
    )
    (tmp_path / "it.yaml").write_text(
        "apiVersion: amlarc.azureml.com/v1alpha1\n"
        "kind: InstanceTypeList\n"
        "items:\n"
        "  - metadata: {name: small}\n"
        "    spec:\n"
        "      nodeSelector:\n"
        "        1: one\n"
        "        kubernetes.io/os: linux\n"
        '        zone: "é"\n'
    )
    result = CliRunner().invoke(cli.main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    found = [line.split(": ")[0:2] for line in result.output.splitlines() if line.startswith("/")]
    assert found == [
        [f"{tmp_path}/extension.yaml:9", 'spec.config.nodeSelector."bad key\\n"'],
        [f"{tmp_path}/extension.yaml:10", "spec.config.nodeSelector.pool"],
        [f"{tmp_path}/it.yaml:7", "items[0].spec.nodeSelector.1"],
        [f"{tmp_path}/it.yaml:9", "items[0].spec.nodeSelector.zone"],
    ]
