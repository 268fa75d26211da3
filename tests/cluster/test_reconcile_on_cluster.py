"""`reconciler plan | apply | status` on the real control plane (issue 6's "must show").

Each test copies the bundled example repo, renames its extension and points its release namespace
at the test's own namespace, and drives the CLI as a user would. Writes are counted by the API
server itself (`apiserver_request_total` on /metrics), not by the client.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from kubernetes import client

from reconciler import kube, objects, source
from reconciler.cli import main as cli
from reconciler.engine import reconcile, record, recordstore
from reconciler.localcluster import plane
from reconciler.localcluster.config import PlaneState
from reconciler.render import auth, render
from tests.cluster.kubehelpers import (
    requests_by_verb,
    served,
    server_side_apply,
    wait_for_cleanup,
    wait_until,
)
from tests.helpers import example_repo, load, set_config

pytestmark = pytest.mark.cluster
# DELETE is left out: the namespace controller is still deleting earlier tests' namespaces.
WRITE_VERBS = {"APPLY", "POST", "PUT", "PATCH"}


def run(kubeconfig: str | None, *args: str) -> Result:
    options = ["--kubeconfig", kubeconfig] if kubeconfig else []
    return CliRunner().invoke(cli.main, [*args, *options])


def rendered_keys(root: Path) -> set[objects.Key]:
    snapshot = source.DirectorySnapshot(root)
    loaded = load(root)
    assert loaded.valid, loaded.problems
    return {objects.key(o) for o in render.render_repo(loaded.repo, snapshot, "x").objects}


def live(cluster: kube.Cluster, key: objects.Key) -> objects.Object | None:
    return kube.get(cluster, objects.reference(key))


def writes(api_client: client.ApiClient, resources: set[str]) -> int:
    """Persisted writes (not dry runs) the API server has served to these resources (status
    subresources of the record included; other controllers' status updates not)."""
    request = api_client.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    text = api_client.call_api(*request).read().decode()
    total = 0
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(
            part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
        )
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") not in WRITE_VERBS or labels.get("dry_run"):
            continue
        if labels.get("resource") not in resources:
            continue
        if labels.get("subresource") and labels.get("resource") != "extensionstatuses":
            continue
        total += int(float(line.rsplit(" ", 1)[1]))
    return total


def gone_or_going(found: objects.Object | None) -> bool:
    """Deleted, or being deleted (a CRD's or a namespace's cleanup takes its time)."""
    return found is None or bool(found["metadata"].get("deletionTimestamp"))


def fingerprints(cluster: kube.Cluster, keys: set[objects.Key]) -> dict[objects.Key, object]:
    """What changes when anyone writes an object's spec or our fields, and not when a
    controller updates its status: the generation and every manager's write times."""
    found: dict[objects.Key, object] = {}
    for key in keys:
        obj = live(cluster, key)
        assert obj is not None, key
        metadata = obj["metadata"]
        times = sorted(
            (m["manager"], m.get("time", ""))
            for m in metadata.get("managedFields") or []
            if not m.get("subresource")
        )
        found[key] = (metadata.get("generation"), times)
    return found


def plural(kind: str) -> str:
    lower = kind.lower()
    return lower + ("es" if lower.endswith("s") else "s")


def test_apply_succeeds_then_plan_is_empty_and_a_second_apply_writes_nothing(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    api_client: client.ApiClient,
) -> None:
    name = f"x{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace)

    first = run(cluster_kubeconfig, "apply", str(root), "--wait", "--timeout", "2m")
    assert first.exit_code == 0, first.output
    assert f"extension {name}: Succeeded" in first.output
    assert "applied 1 Namespace" in first.output  # progress per stage
    # The example's endpoint got its own keys, labelled as the extension's (so prune covers it).
    endpoint_keys = kube.get_secret(cluster, namespace, "mnist-endpoint-auth")
    assert endpoint_keys is not None
    assert endpoint_keys["metadata"]["labels"]["app.kubernetes.io/part-of"] == name
    assert sorted(endpoint_keys["data"]) == ["primaryKey", "secondaryKey"]

    planned = run(cluster_kubeconfig, "plan", str(root))
    assert planned.exit_code == 0, planned.output
    assert "0 to create, 0 to update, 0 to delete" in planned.output
    in_sync = run(cluster_kubeconfig, "diff", str(root), "--cluster")
    assert in_sync.exit_code == 0, in_sync.output

    keys = rendered_keys(root)
    resources = {plural(k.kind) for k in keys} | {"extensionstatuses"}
    # The counters are cluster-wide: let the namespace controller and the garbage collector
    # finish cleaning up earlier tests' namespaces (they patch finalizers away as they go).
    wait_for_cleanup(api_client, resources | {"customresourcedefinitions"})
    before = writes(api_client, resources)
    asked = requests_by_verb(api_client, resources | {"customresourcedefinitions"})
    second = run(cluster_kubeconfig, "apply", str(root), "-o", "json")
    assert second.exit_code == 0, second.output
    assert writes(api_client, resources) == before, "a no-op apply wrote to the cluster"
    # -o json: the events as JSON lines, then the outcome; the other lines are stderr's.
    lines = [json.loads(line) for line in second.output.splitlines() if line.startswith("{")]
    reported = [line for line in lines if line["extension"] == name]
    assert [line["event"] for line in reported] == ["planned", "outcome"], second.output
    assert (reported[0]["create"], reported[0]["update"], reported[0]["delete"]) == (0, 0, 0)
    assert reported[1]["state"] == "Succeeded"
    # The fingerprint says every object is unchanged: no dry run, no read of one object, only
    # one LIST per kind and namespace (the example's objects live in one namespace, or none).
    sent = requests_by_verb(api_client, resources | {"customresourcedefinitions"}) - asked
    # The counters are the whole server's: a controller's watch that times out and resumes in
    # this window is counted too (a WATCH: apply, a one-shot command, never watches).
    sent = collections.Counter({key: n for key, n in sent.items() if key[0] != "WATCH"})
    # So is the API server's own GET of a namespace its admission (NamespaceLifecycle) has not
    # cached yet, for an object someone else creates meanwhile: with real pods, the kubelets'
    # Events. CI saw one; an apply names its namespaces in LISTs, never GETs one.
    del sent[("GET", "namespaces")]
    assert sent, "the API server counted no request of the second apply"
    assert {verb for verb, _ in sent} == {"LIST"}, sent
    assert max(sent.values()) == 1, sent
    assert {resource for _, resource in sent} >= resources, sent

    recorded = kube.get(cluster, record.ref(name))
    assert recorded is not None
    assert record.inventory_of(recorded) >= keys
    assert recorded["status"]["provisioningState"] == "Succeeded"
    ready = recorded["status"]["conditions"][0]
    assert (ready["type"], ready["status"]) == ("Ready", "True")

    shown = run(cluster_kubeconfig, "status", "--output", "json")
    assert shown.exit_code in (0, 1), shown.output
    mine = [s for s in json.loads(shown.output) if s["name"] == name]
    assert mine == [
        {
            "name": name,
            "provisioningState": "Succeeded",
            "lastAppliedRevision": source.DirectorySnapshot(root).revision(),
            "owner": str(root.resolve()),
            "reasons": [],
        }
    ]
    assert run(cluster_kubeconfig, "status").output.count(name) == 1
    as_yaml = run(cluster_kubeconfig, "status", "-o", "yaml")
    assert [s for s in yaml.safe_load(as_yaml.stdout) if s["name"] == name] == mine
    wide = run(cluster_kubeconfig, "status", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-3:] == ["ATTEMPTED", "DRIFTED", "SUSPENDED"]
    assert [row.split()[-1] for row in wide if row.startswith(f"{name} ")] == ["False"]

    # A traffic change is applied (the router's config) and never rewrites the endpoint's keys.
    endpoint_file = root / "deployments" / "endpoint.yaml"
    text = endpoint_file.read_text()
    assert "blue: 90\n  green: 10" in text
    endpoint_file.write_text(text.replace("blue: 90\n  green: 10", "blue: 100\n  green: 0"))
    planned = run(cluster_kubeconfig, "plan", str(root))
    assert planned.exit_code == 1, planned.output
    assert "0 to create, 1 to update, 0 to delete" in planned.output, planned.output
    assert f"~ update ConfigMap/{namespace}/azureml-fe-v2-config" in planned.output
    # The traffic summary `diff --base` prints, from the live split: in `plan` (text, first
    # line, and -o yaml) and in `diff --cluster`.
    line = "mnist: blue 90 -> 100, green 10 -> 0"
    assert planned.stdout.splitlines()[0] == f"traffic: {line}", planned.output
    planned_yaml = run(cluster_kubeconfig, "plan", str(root), "-o", "yaml")
    assert planned_yaml.exit_code == 1, planned_yaml.output
    document = yaml.safe_load(planned_yaml.stdout)
    assert document["traffic"] == [line]
    assert [(c["action"], c["name"]) for c in document["changes"]] == [
        ("update", "azureml-fe-v2-config")
    ]
    compared = run(cluster_kubeconfig, "diff", str(root), "--cluster", "-o", "json")
    assert compared.exit_code == 1 and json.loads(compared.output)["traffic"] == [line]
    moved = run(cluster_kubeconfig, "apply", str(root))
    assert moved.exit_code == 0, moved.output
    config_map = live(cluster, objects.Key("v1", "ConfigMap", namespace, "azureml-fe-v2-config"))
    assert config_map is not None and "blue: 100" in config_map["data"]["router.yaml"]
    kept = kube.get_secret(cluster, namespace, "mnist-endpoint-auth")
    assert kept is not None
    assert kept["data"] == endpoint_keys["data"]
    assert kept["metadata"]["resourceVersion"] == endpoint_keys["metadata"]["resourceVersion"]


def test_disabling_training_prunes_exactly_the_training_components(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"x{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace, jobs=False)
    assert run(cluster_kubeconfig, "apply", str(root)).exit_code == 0
    before = rendered_keys(root)
    # Looks like ours (same labels) but was never applied by the reconciler: must survive.
    lookalike = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "not-in-the-inventory",
            "namespace": namespace,
            "labels": {
                objects.MANAGED_BY_LABEL: objects.MANAGED_BY,
                objects.PART_OF_LABEL: name,
            },
        },
        "data": {"keep": "me"},
    }
    kube.apply(cluster, lookalike, field_manager="someone-else")

    set_config(root, "enableTraining: true", "enableTraining: false")
    after = rendered_keys(root)
    crds = {k for k in before - after if k.kind == "CustomResourceDefinition"}
    assert {k.name for k in crds} >= {"jobs.batch.volcano.sh"}  # volcano goes with training
    training_only = before - after - crds
    assert any(k.name == "aml-operator" for k in training_only)

    planned = run(cluster_kubeconfig, "plan", str(root))
    assert planned.exit_code == 1
    assert f"0 to create, 1 to update, {len(training_only)} to delete" in planned.output, (
        planned.output
    )
    assert f"~ update ConfigMap/{namespace}/gateway" in planned.output  # no longer training

    # `diff --cluster` is the same plan, in the PR formats: JSON names every change.
    compared = run(cluster_kubeconfig, "diff", str(root), "--cluster", "-o", "json")
    assert compared.exit_code == 1, compared.output
    changes = json.loads(compared.output)["changes"]
    deleted = {(c["kind"], c["namespace"], c["name"]) for c in changes if c["action"] == "delete"}
    assert deleted == {(k.kind, k.namespace, k.name) for k in training_only}
    updated = [(c["kind"], c["name"]) for c in changes if c["action"] == "update"]
    assert updated == [("ConfigMap", "gateway")]

    result = run(cluster_kubeconfig, "apply", str(root))
    assert result.exit_code == 0, result.output
    assert f"pruned {len(training_only)} objects" in result.output
    for key in training_only:
        assert gone_or_going(live(cluster, key)), f"{key} was not pruned"
    for key in after | crds:  # CRDs are never pruned
        assert live(cluster, key) is not None, f"{key} was deleted"
    assert live(cluster, objects.key(lookalike)) is not None
    keys_secrets = auth.repo_secrets(load(root).repo)[name]
    assert {k.name for k in map(objects.key, keys_secrets)} == {
        "blue-auth",
        "green-auth",
        "mnist-endpoint-auth",
    }
    inventory = after | {objects.key(s) for s in keys_secrets}
    assert record.inventory_of(kube.get(cluster, record.ref(name))) == inventory


def test_an_invalid_repo_changes_nothing_and_its_problems_are_recorded(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"x{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace)
    assert run(cluster_kubeconfig, "apply", str(root)).exit_code == 0
    versions = fingerprints(cluster, rendered_keys(root))
    revision = kube.get(cluster, record.ref(name))["status"]["lastAppliedRevision"]  # type: ignore[index]

    # One real change (HA) and one invalid setting: neither may reach the cluster.
    set_config(root, "inferenceRouterHA: false", "inferenceRouterHA: true\n    nodeSelectr: 3")
    result = run(cluster_kubeconfig, "apply", str(root))
    assert result.exit_code == 1
    assert "infra/extension.yaml:" in result.output and "nothing was applied" in result.output
    assert fingerprints(cluster, set(versions)) == versions
    status = kube.get(cluster, record.ref(name))["status"]  # type: ignore[index]
    assert status["provisioningState"] == "Failed"
    assert status["conditions"][0]["reason"] == "ValidationFailed"
    assert any("infra/extension.yaml:" in p for p in status["problems"])
    assert status["lastAppliedRevision"] == revision


def test_a_field_owned_by_another_manager_is_a_conflict_unless_forced(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    api_client: client.ApiClient,
) -> None:
    name = f"x{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace, jobs=False)
    assert run(cluster_kubeconfig, "apply", str(root)).exit_code == 0
    router = objects.Key("apps/v1", "Deployment", namespace, "azureml-fe-v2")
    current = live(cluster, router)
    assert current is not None
    # Someone takes the router's service account name over with kubectl-style force.
    server_side_apply(
        api_client,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "azureml-fe-v2", "namespace": namespace},
            "spec": {"template": {"spec": {"serviceAccountName": "default"}}},
        },
        force=True,
    )
    versions = fingerprints(cluster, rendered_keys(root))

    refused = run(cluster_kubeconfig, "apply", str(root))
    assert refused.exit_code == 1
    assert "conflict" in refused.output and "--force-conflicts" in refused.output
    assert fingerprints(cluster, set(versions)) == versions  # atomic: nothing else applied

    forced = run(cluster_kubeconfig, "apply", str(root), "--force-conflicts")
    assert forced.exit_code == 0, forced.output
    template = live(cluster, router)["spec"]["template"]["spec"]  # type: ignore[index]
    assert (
        template["serviceAccountName"] == current["spec"]["template"]["spec"]["serviceAccountName"]
    )


def test_an_extension_that_left_the_repo_is_pruned_only_when_allowed(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"x{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace, jobs=False)
    assert run(cluster_kubeconfig, "apply", str(root)).exit_code == 0
    keys = rendered_keys(root)
    # The repo now holds another extension only (nothing may go without permission).
    set_config(root, f"name: {name}", f"name: {name}b")
    set_config(root, f"releaseNamespace: {namespace}", f"releaseNamespace: {namespace}-b")

    planned = run(cluster_kubeconfig, "plan", str(root))
    assert "prune refused: the repo renders nothing for this extension" in planned.output
    result = run(cluster_kubeconfig, "apply", str(root))
    assert result.exit_code == 1
    assert "--allow-mass-prune" in result.output
    assert all(live(cluster, k) is not None for k in keys)

    allowed = run(cluster_kubeconfig, "apply", str(root), "--allow-mass-prune")
    assert allowed.exit_code == 0, allowed.output
    assert kube.get(cluster, record.ref(name)) is None
    moved = keys & rendered_keys(root)  # CRDs and instance types: the other extension's now
    assert {k.kind for k in moved} == {"CustomResourceDefinition", "InstanceType"}
    for key in keys:
        found = live(cluster, key)
        if key in moved:
            assert found is not None
            assert found["metadata"]["labels"][objects.PART_OF_LABEL] == f"{name}b"
        elif not key.namespace:
            assert gone_or_going(found), f"{key} was not pruned"
    assert reconcile.delete_extension(cluster, f"{name}b", lambda _event: None) == []
    assert kube.get(cluster, record.ref(f"{name}b")) is None


def test_a_job_runs_once_per_name(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"x{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace)
    set_config(
        root,
        "allowInsecureConnections: true",
        "allowInsecureConnections: true\n    installVolcano: false",
    )
    assert run(cluster_kubeconfig, "apply", str(root)).exit_code == 0
    job = objects.Key("batch/v1", "Job", namespace, "jobs-hello")
    assert live(cluster, job) is not None
    kube.delete(
        cluster,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "jobs-hello", "namespace": namespace},
        },
    )
    wait_until(lambda: live(cluster, job), lambda found: found is None, "the job to go")

    planned = run(cluster_kubeconfig, "plan", str(root))
    assert planned.exit_code == 0, planned.output
    assert f"note: {job}: already ran" in planned.output
    assert run(cluster_kubeconfig, "apply", str(root)).exit_code == 0
    assert live(cluster, job) is None
    # Still in the inventory, so the apply after that does not create it either.
    assert job in record.inventory_of(kube.get(cluster, record.ref(name)))
    assert run(cluster_kubeconfig, "apply", str(root)).exit_code == 0
    assert live(cluster, job) is None


def test_killing_the_api_server_mid_apply_ends_consistent_after_the_next_apply(
    tmp_path: Path,
    namespace: str,
    local_plane: PlaneState | None,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
) -> None:
    if local_plane is None:
        pytest.skip("needs the project's own control plane (USE_EXISTING_CLUSTER is set)")
    name = f"x{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace)
    command = [sys.executable, "-m", "reconciler", "apply", str(root)]
    command += ["--kubeconfig", str(cluster_kubeconfig)]
    applying = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Mid-apply: once it has planned, about to write. The server has answered it by then, so
    # the restart is an outage it waits out (a server that never answered fails it at once).
    seen = []
    assert applying.stdout is not None
    for line in applying.stdout:
        seen.append(line)
        if line.startswith(b"extension "):
            break
    state_dir = Path(local_plane.state_dir)
    plane.kill("kube-apiserver", state_dir)
    restarted = threading.Timer(2.0, plane.relaunch, args=("kube-apiserver", state_dir))
    restarted.start()
    rest, _ = applying.communicate(timeout=300)
    restarted.join()
    output = b"".join(seen) + rest
    assert b"cannot reach the Kubernetes API server" not in output, output.decode()
    # Whatever the interrupted apply managed, the next one completes it.
    again = run(cluster_kubeconfig, "apply", str(root), "--wait", "--timeout", "2m")
    assert again.exit_code == 0, output.decode() + again.output
    planned = run(cluster_kubeconfig, "plan", str(root))
    assert planned.exit_code == 0, planned.output
    keys = rendered_keys(root)
    assert record.inventory_of(kube.get(cluster, record.ref(name))) >= keys
    assert all(live(cluster, k) is not None for k in keys if k.kind != "Job")


def test_extension_list_show_and_delete_from_the_cluster(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"x{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace, jobs=False)
    shutil.rmtree(root / "deployments")  # an extension with workloads cannot leave the repo
    assert run(cluster_kubeconfig, "apply", str(root), "--wait").exit_code == 0

    listed = run(cluster_kubeconfig, "extension", "list")
    assert listed.exit_code == 0, listed.output
    assert any(line.split()[:2] == [name, "Succeeded"] for line in listed.output.splitlines())
    shown = run(cluster_kubeconfig, "extension", "show", name)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["provisioningState"] == "Succeeded"

    keys = rendered_keys(root)
    deleted = run(
        cluster_kubeconfig,
        "extension",
        "delete",
        name,
        str(root),
        "--from-cluster",
    )
    assert deleted.exit_code == 0, deleted.output
    assert not (root / "infra" / "extension.yaml").exists()
    assert kube.get(cluster, record.ref(name)) is None
    for key in keys:
        found = live(cluster, key)
        kept = key.kind == "CustomResourceDefinition"  # never deleted: other resources use it
        assert found is not None if kept else gone_or_going(found), key
    missing = run(cluster_kubeconfig, "extension", "show", name)
    assert missing.exit_code == 1 and "no extension named" in missing.output


def test_a_status_refresh_never_overwrites_a_newer_outcome(
    namespace: str, cluster: kube.Cluster
) -> None:
    """`reconciler status` recomputes health and writes it back, from what it read; if a
    reconcile recorded something in between (a rejected revision), the API server refuses the
    stale write instead of letting it erase the problems."""
    name = f"r{namespace[-6:]}"
    recordstore.ensure_record_crd(cluster)
    kube.apply(cluster, {**record.ref(name), "spec": {"source": "test"}})
    try:
        stale = kube.get(cluster, record.ref(name))
        recordstore.record_problems(cluster, [name], ["x.yaml:1: field: broken"], "rev2", "test")
        healthy = record.Outcome(record.SUCCEEDED, "Succeeded")
        with pytest.raises(kube.KubeError) as refused:
            recordstore.write_status(cluster, name, stale, outcome=healthy, precondition=True)
        assert refused.value.status == 409
        now = kube.get(cluster, record.ref(name))
        assert now is not None and now["status"]["problems"] == ["x.yaml:1: field: broken"]
    finally:
        kube.delete(cluster, record.ref(name))


def _record_status_writes(api_client: client.ApiClient) -> int:
    return sum(
        int(float(s["value"]))
        for s in served(api_client)
        if s.get("resource") == "extensionstatuses"
        and s.get("subresource") == "status"
        and s["verb"] in WRITE_VERBS
    )


def test_an_update_within_the_inventory_writes_the_record_once(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    api_client: client.ApiClient,
) -> None:
    """A commit that changes objects the inventory already holds writes the record's status
    once, with the outcome (at 10,000 objects a write of the record is about a second of the
    API server's time); the record ends as it always did."""
    import git

    name = f"w{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace, jobs=False)
    repository = git.Repo.init(root)
    repository.git.add(A=True)
    repository.index.commit("first")
    first = run(cluster_kubeconfig, "apply", str(root))
    assert first.exit_code == 0, first.output
    blue = root / "deployments" / "blue.yaml"
    blue.write_text(blue.read_text().replace("ubuntu22.04:latest", "ubuntu22.04:20250101.v1"))
    repository.git.add(A=True)
    repository.index.commit("second")
    before = _record_status_writes(api_client)
    second = run(cluster_kubeconfig, "apply", str(root))
    assert second.exit_code == 0, second.output
    assert "0 to create, 1 to update, 0 to delete" in second.output
    assert _record_status_writes(api_client) - before == 1
    recorded = kube.get(cluster, record.ref(name))
    assert recorded is not None
    revision = repository.head.commit.hexsha
    status = recorded["status"]
    assert status["lastAppliedRevision"] == status["lastAttemptedRevision"] == revision
    assert record.inventory_of(recorded) >= rendered_keys(root)


def test_a_record_listing_its_inventory_as_entries_still_prunes_and_is_rewritten_as_ids(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"e{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace, jobs=False)
    assert run(cluster_kubeconfig, "apply", str(root)).exit_code == 0
    # The record as an earlier version wrote it: one object per inventory entry, no ids.
    written = kube.get(cluster, record.ref(name)) or {}
    keys = record.inventory_of(written)
    status = dict(written["status"])
    status["inventory"] = {
        "count": len(keys),
        "entries": [
            {"apiVersion": k.api_version, "kind": k.kind, "name": k.name}
            | ({"namespace": k.namespace} if k.namespace else {})
            for k in sorted(keys)
        ],
    }
    kube.apply_status(cluster, {**record.ref(name), "status": status})
    old = (kube.get(cluster, record.ref(name)) or {})["status"]["inventory"]
    assert "ids" not in old and len(old["entries"]) == len(keys)

    set_config(root, "enableTraining: true", "enableTraining: false")
    generated = {objects.key(s) for s in auth.repo_secrets(load(root).repo)[name]}
    after = rendered_keys(root) | generated
    training_only = {k for k in keys - after if k.kind != "CustomResourceDefinition"}
    assert training_only
    result = run(cluster_kubeconfig, "apply", str(root))
    assert result.exit_code == 0, result.output
    assert f"pruned {len(training_only)} objects" in result.output, result.output
    rewritten = (kube.get(cluster, record.ref(name)) or {})["status"]["inventory"]
    assert "entries" not in rewritten
    assert record.inventory_of({"status": {"inventory": rewritten}}) == after
