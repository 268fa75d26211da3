"""The plane's placement policy (`localcluster.realplacement`) names what the project renders.

The policy's CEL is run by the API server, not here (the cluster tests
`test_real_placement_on_cluster.py` and `test_controller_in_pod_on_cluster.py` see pods placed
for real). What a unit test can hold is
the link between the policy and the things it matches, which live in layers it may not import:
the controller's labels are those `reconciler install` puts on its Deployment's pods (for any
namespace and image), and the router command is how the render starts the router.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from reconciler import source
from reconciler.cli import main as cli
from reconciler.localcluster import realplacement
from reconciler.render import render, workloadobjects
from tests.helpers import load

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests"


def installed_deployment(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli.main, ["install", "--repo", "git://10.0.0.1:9418/repo", *args])
    assert result.exit_code == 0, result.output
    (found,) = [o for o in yaml.safe_load_all(result.stdout) if o["kind"] == "Deployment"]
    deployment: dict[str, Any] = found
    return deployment


@pytest.mark.parametrize(
    "args",
    [(), ("--namespace", "ops", "--image", "registry.example.com/team/reconciler:dev")],
)
def test_the_controller_labels_are_on_every_pod_of_the_installed_deployment(
    args: tuple[str, ...],
) -> None:
    """The Deployment selects its pods by exactly these labels, so each pod it makes carries
    them whatever the namespace, image or args."""
    deployment = installed_deployment(*args)
    assert deployment["spec"]["selector"]["matchLabels"] == realplacement.CONTROLLER_LABELS
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels.items() >= realplacement.CONTROLLER_LABELS.items()


def test_the_router_command_is_how_the_render_starts_the_router() -> None:
    loaded = load(EXAMPLE)
    assert loaded.valid, [str(p) for p in loaded.problems]
    rendered = render.render_repo(loaded.repo, source.DirectorySnapshot(EXAMPLE), "test").objects
    commands = [
        c.get("command", [])
        for o in rendered
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    size = len(workloadobjects.ROUTER_COMMAND)
    assert [c for c in commands if tuple(c[:size]) == workloadobjects.ROUTER_COMMAND]


def test_the_match_takes_the_controller_and_still_leaves_gpu_pods_alone() -> None:
    expression = realplacement.match_expression()
    for key, value in realplacement.CONTROLLER_LABELS.items():
        assert f"object.metadata.labels['{key}'] == '{value}'" in expression
    # Every kind of pod matched sits inside one group that the GPU exclusion follows.
    kinds, _, gpu = expression.rpartition(" && !object.spec.containers.exists(")
    assert kinds.startswith("((") and kinds.endswith("))")
    assert f"'{realplacement.GPU_RESOURCE}' in c.resources.limits" in gpu
    assert expression.count("(") == expression.count(")")


def test_the_policy_matches_pod_creation_only() -> None:
    policy, binding = realplacement.policy_objects()
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["pods"], ["CREATE"])
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == realplacement.match_expression()
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
