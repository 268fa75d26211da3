"""An edited scoring script reaches the pods (issue 26, item 7), on the local plane.

The scoring script travels in a ConfigMap, which is not part of the pod template: an apply used
to update the ConfigMap, say Succeeded, and leave every running model server on the old code.
The pod template now carries the content digest of what its pods mount, so the edit changes the
template, the Deployment controller rolls out a new ReplicaSet, and the real node's kubelet
starts the new pod's server from the new ConfigMap. The test applies the bundled example with a
scoring script that answers one word, scores it through the router, edits the word, applies
again and scores until the new word comes back (bounded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler import kube
from reconciler.cli import main as cli
from reconciler.render import workloadobjects
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realpods import Pods, post, primary_key
from tests.helpers import example_repo

pytestmark = pytest.mark.cluster

SCORE = """\
ANSWER = {answer!r}


def init():
    pass


def run(raw_data):
    return {{"answer": ANSWER}}
"""


def pod_template(cluster: kube.Cluster, namespace: str, name: str) -> dict[str, Any]:
    ref = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
    live = kube.get(cluster, ref)
    assert live is not None
    template: dict[str, Any] = live["spec"]["template"]
    return template


def replica_sets(cluster: kube.Cluster, namespace: str, deployment: str) -> set[str]:
    selector = f"{workloadobjects.DEPLOYMENT_LABEL}={deployment}"
    found = kube.list_objects(cluster, "apps/v1", "ReplicaSet", namespace, selector)
    return {str(rs["metadata"]["name"]) for rs in found}


def test_an_edited_score_py_rolls_the_deployment_and_the_next_score_is_the_new_answer(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    pods: Pods,
) -> None:
    root = example_repo(tmp_path, f"r{namespace[-6:]}", namespace, jobs=False)
    script = root / "deployments" / "score" / "score.py"  # blue's and green's
    script.write_text(SCORE.format(answer="first"))
    url = pods.apply(root, cluster_kubeconfig)
    key = primary_key(cluster, namespace, "blue")
    score_url = f"{url}/api/v1/service/blue/score"
    body = json.dumps({"data": [[1.0, 2.0, 3.0]]}).encode()

    def answer() -> tuple[int, Any]:
        code, raw = post(score_url, body, key)
        return code, json.loads(raw) if code == 200 else raw[:300]

    # `apply --wait` saw the pod ready; the router follows its EndpointSlice a moment later.
    wait_until(answer, lambda got: got == (200, {"answer": "first"}), "blue's first answer", 60)
    digest = workloadobjects.CONTENT_DIGEST_ANNOTATION
    before = {d: pod_template(cluster, namespace, d)["metadata"]["annotations"][digest]
              for d in ("blue", "green")}  # fmt: skip
    first_sets = replica_sets(cluster, namespace, "blue")
    first_pods = {p.name for p in pods.model_pods("blue")}
    assert len(first_sets) == 1 and first_pods

    script.write_text(SCORE.format(answer="second"))
    options = ["--kubeconfig", cluster_kubeconfig] if cluster_kubeconfig else []
    applied = CliRunner().invoke(
        cli.main, ["apply", str(root), "--wait", "--timeout", "3m", *options]
    )
    assert applied.exit_code == 0, applied.output + pods.describe()

    # Both deployments that load the script rolled: a new template, so a new ReplicaSet.
    for deployment in ("blue", "green"):
        after = pod_template(cluster, namespace, deployment)["metadata"]["annotations"][digest]
        assert after != before[deployment], deployment
    new_sets = replica_sets(cluster, namespace, "blue") - first_sets
    assert len(new_sets) == 1, new_sets
    wait_until(answer, lambda got: got == (200, {"answer": "second"}), "blue's new answer", 120)
    # The old pods went with the old ReplicaSet: nothing serves the old code any more.
    wait_until(lambda: {p.name for p in pods.model_pods("blue")},
               lambda names: bool(names) and names.isdisjoint(first_pods),
               "the old pod to stop", 90)  # fmt: skip
    assert {answer()[1]["answer"] for _ in range(10)} == {"second"}
