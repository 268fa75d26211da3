"""Everything `render` produces is accepted by the real API server (server-side dry-run apply).

CRDs and the release namespace are applied for real first (a dry run cannot create what the
rest needs to exist); every other object is then applied with dryRun=All and strict field
validation, so an unknown field or an invalid value in a template fails here.
"""

from pathlib import Path

import pytest

from reconciler import kube, objects, source
from reconciler.render import render, workloadobjects
from tests.helpers import SCENARIOS, load, scenario_repo

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster


def rendered(root: Path) -> list[objects.Object]:
    loaded = load(root)
    assert loaded.valid, [str(p) for p in loaded.problems]
    return render.render_repo(loaded.repo, source.DirectorySnapshot(root), "unversioned").objects


def dry_run_all(cluster: kube.Cluster, objs: list[objects.Object]) -> list[objects.Object]:
    results = []
    for obj in objs:
        if obj["kind"] in ("CustomResourceDefinition", "Namespace"):
            results.append(kube.apply(cluster, obj))
            if obj["kind"] == "CustomResourceDefinition":
                kube.wait_established(cluster, obj["metadata"]["name"])
        else:
            results.append(kube.apply(cluster, obj, dry_run=True))
    return results


def test_example_repo_is_accepted(cluster: kube.Cluster) -> None:
    objs = rendered(REPO_ROOT / "manifests")
    results = dry_run_all(cluster, objs)
    assert [objects.key(r) for r in results] == [objects.key(o) for o in objs]
    router = next(
        r for r in results if r["kind"] == "Deployment" and "azureml-fe" in r["metadata"]["name"]
    )
    # The server defaulted what the template left out: proof the object went through admission.
    assert router["spec"]["template"]["spec"]["restartPolicy"] == "Always"


@pytest.mark.parametrize("name", SCENARIOS)
def test_documented_scenarios_are_accepted(
    cluster: kube.Cluster, tmp_path: Path, name: str
) -> None:
    objs = rendered(scenario_repo(tmp_path, name))
    assert len(dry_run_all(cluster, objs)) == len(objs)


def test_the_instancetype_crd_enforces_the_spec(cluster: kube.Cluster) -> None:
    objs = rendered(REPO_ROOT / "manifests")
    crd = next(o for o in objs if o["metadata"]["name"] == "instancetypes.amlarc.azureml.com")
    kube.apply(cluster, crd)
    kube.wait_established(cluster, crd["metadata"]["name"])
    bad = {
        "apiVersion": "amlarc.azureml.com/v1alpha1",
        "kind": "InstanceType",
        "metadata": {"name": "gpu-in-requests"},
        "spec": {"resources": {"requests": {"nvidia.com/gpu": 1}}},
    }
    with pytest.raises(kube.KubeError, match=r"nvidia\.com/gpu"):
        kube.apply(cluster, bad, dry_run=True)
    bad["spec"] = {"resources": {"limits": {"memory": "lots"}}}
    with pytest.raises(kube.KubeError, match="memory"):
        kube.apply(cluster, bad, dry_run=True)


def test_the_cli_v2_examples_are_accepted(cluster: kube.Cluster) -> None:
    root = REPO_ROOT / "tests" / "fixtures" / "cliv2"
    loaded = load(root)
    # The endpoint document is the endpoint model's to recognise; the rest must be clean.
    assert [p for p in loaded.errors if not p.file.endswith("kubernetes-endpoint.yml")] == []
    objs = render.render_repo(loaded.repo, source.DirectorySnapshot(root), "unversioned").objects
    results = dry_run_all(cluster, objs)
    assert [objects.key(r) for r in results] == [objects.key(o) for o in objs]
    blue = next(r for r in results if r["kind"] == "Deployment" and r["metadata"]["name"] == "blue")
    pod = blue["spec"]["template"]
    # The fractional-Gi request, the probes and the tag annotation went through admission.
    assert set(pod["metadata"]["annotations"]) == {
        "tags.gitops.mlext.io/model-version",
        workloadobjects.CONTENT_DIGEST_ANNOTATION,
    }
    assert pod["metadata"]["annotations"]["tags.gitops.mlext.io/model-version"] == "fraud-v1"
    main = pod["spec"]["containers"][0]
    assert main["resources"]["requests"]["cpu"] == "200m"  # "0.2", canonicalised by the server
    assert main["readinessProbe"]["successThreshold"] == 2


@pytest.mark.parametrize("example", ["kubernetes-blue-green", "mlflow-no-code", "jobs"])
def test_the_public_example_repos_are_accepted(cluster: kube.Cluster, example: str) -> None:
    # Their init containers (the conda environment, fetched inputs), folder-model volume items
    # and the MLflow script's ConfigMap go through admission with strict field validation.
    root = REPO_ROOT / "tests" / "fixtures" / "public-examples" / example
    objs = rendered(root)
    results = dry_run_all(cluster, objs)
    assert [objects.key(r) for r in results] == [objects.key(o) for o in objs]
