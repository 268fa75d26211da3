"""The GitOps loop's tick against the real control plane, in process (`gitops.controller`).

A tick during which a newer trigger came (a push while it was still carrying out an earlier
commit) leaves the extensions it has not reached, and those it planned with nothing to apply,
to the next tick, which starts at once; for at most `controller.MAX_DEFER` seconds in a row, so
every extension is reconciled. The cut tick's outcome writes land while the next one starts.
An extension in sync is not planned again while its inputs and live objects stay as they were
(`engine.planmemo`), and is as soon as either changes.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import git
import pytest
from kubernetes import client

from reconciler import kube, objects, source
from reconciler.engine import livecache, reconcile, record, recordstore
from reconciler.gitops import controller, loopmetrics
from tests.helpers import example_repo

pytestmark = pytest.mark.cluster


class Gated(recordstore.Deferred):
    """Deferred outcome writes that wait for `gate` before they start."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self._gate = gate

    def __call__(self, write: recordstore.Write) -> None:
        def gated() -> None:
            self._gate.wait(60)
            write()

        super().__call__(gated)


def applied_revisions(cluster: kube.Cluster, names: list[str]) -> list[str]:
    found = []
    for name in names:
        live = kube.get(cluster, record.ref(name)) or {}
        found.append(str((live.get("status") or {}).get("lastAppliedRevision", "")))
    return found


def two_extensions(tmp_path: Path, namespace: str) -> tuple[list[str], Path, str]:
    """A git repo of two extensions (the example's, without workloads), in `namespace` and
    `namespace`-b: their names, the repo, the first extension's file."""
    names = [f"a{namespace[-6:]}", f"b{namespace[-6:]}"]
    root = example_repo(tmp_path, names[0], namespace, jobs=False)
    shutil.rmtree(root / "deployments")
    first = (root / "infra" / "extension.yaml").read_text()
    second = first.replace(f"name: {names[0]}", f"name: {names[1]}")
    (root / "infra" / "second.yaml").write_text(
        second.replace(f"releaseNamespace: {namespace}", f"releaseNamespace: {namespace}-b")
    )
    return names, root, first


def delete_namespace(api_client: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api_client).delete_namespace(name, propagation_policy="Background")
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def test_a_tick_a_newer_trigger_came_during_leaves_the_rest_to_the_next_one(
    tmp_path: Path, namespace: str, cluster: kube.Cluster, api_client: client.ApiClient
) -> None:
    names, root, first = two_extensions(tmp_path, namespace)
    repository = git.Repo.init(root)
    repository.git.add(A=True)
    one = repository.index.commit("two extensions").hexsha
    now = [1000.0]
    loop = controller.Controller(
        cluster,
        lambda: source.DirectorySnapshot(root),
        controller.Settings(interval=3600),
        loopmetrics.ControllerMetrics("0.0.0", None),
        clock=lambda: now[0],
    )
    try:
        assert loop.tick().result == "success"
        assert applied_revisions(cluster, names) == [one, one]

        def pushed(path: Path, text: str, message: str) -> tuple[str, controller.TickOutcome]:
            """Commit `text` to `path`; a push comes while its tick runs (here: before)."""
            path.write_text(text)
            repository.git.add(A=True)
            revision = repository.index.commit(message).hexsha
            loop.trigger("a push")
            return revision, loop.tick()

        # A commit that changes the first extension's objects: it is carried out, the second
        # (nothing to apply) is left. The tick does not wait for its outcome's write (held
        # here until the gate opens), which lands before the next tick reads the records.
        gate = threading.Event()
        loop.outcomes = Gated(gate)
        mirror = first.replace("  config:\n", "  config:\n    imageRegistry: m.io\n")
        two, cut = pushed(root / "infra" / "extension.yaml", mirror, "a mirror for the first")
        assert (cut.result, cut.message) == ("superseded", f"left: {names[1]}")
        assert applied_revisions(cluster, names) == [one, one]  # applied, outcome not written
        gate.set()
        loop.outcomes.settle()
        assert applied_revisions(cluster, names) == [two, one]

        # Triggers keep coming (here: the trigger stays pending): cut short again, until the
        # second extension has waited MAX_DEFER; then it is carried out too.
        now[0] += controller.MAX_DEFER - 0.1
        assert loop.tick().result == "superseded"
        assert applied_revisions(cluster, names) == [two, one]
        now[0] += 0.2
        assert loop.tick().result == "success"
        loop.outcomes.settle()  # the trigger is still pending: the tick left its writes
        assert applied_revisions(cluster, names) == [two, two]

        # A commit that changes no object, with a newer push waiting: no extension has
        # anything to apply, so none is carried out (not even its record's new revision).
        three, cut = pushed(root / "NOTES.md", "nothing the reconciler reads\n", "notes")
        assert (cut.result, cut.message) == ("superseded", f"left: {', '.join(names)}")
        assert applied_revisions(cluster, names) == [two, two]
        now[0] += controller.MAX_DEFER + 0.1  # the trigger stays pending, as above
        assert loop.tick().result == "success"
        loop.outcomes.settle()
        assert applied_revisions(cluster, names) == [three, three]
    finally:
        delete_namespace(api_client, f"{namespace}-b")


def test_an_in_sync_extension_is_planned_again_only_when_its_inputs_or_live_objects_change(
    tmp_path: Path, namespace: str, cluster: kube.Cluster, api_client: client.ApiClient
) -> None:
    names, root, first = two_extensions(tmp_path, namespace)
    repository = git.Repo.init(root)
    repository.git.add(A=True)
    repository.index.commit("two extensions")
    cache = livecache.LiveCache(cluster)
    loop = controller.Controller(
        cluster,
        lambda: source.DirectorySnapshot(root),
        # As `sync` has it: an edit by another manager is reverted, not a conflict.
        controller.Settings(interval=3600, options=reconcile.Options(force_conflicts=True)),
        loopmetrics.ControllerMetrics("0.0.0", None),
        cache=cache,
    )
    gateway = objects.Key("v1", "ConfigMap", f"{namespace}-b", "gateway")

    def commit(path: Path, text: str, message: str) -> str:
        path.write_text(text)
        repository.git.add(A=True)
        return repository.index.commit(message).hexsha

    def states() -> list[str]:
        found = [kube.get(cluster, record.ref(name)) or {} for name in names]
        return [record.summary(live)["provisioningState"] for live in found]

    def until_both_reused() -> None:
        """Tick until both extensions are healthy and a tick reuses both plans. Rolling out,
        the Deployments' and DaemonSets' status changes: each change is a new live object,
        whose extension is planned again."""
        deadline = time.monotonic() + 120
        while True:
            before = loop.reuse.plans.reused
            assert loop.tick().result == "success"
            loop.outcomes.settle()
            if loop.reuse.plans.reused == before + 2 and states() == ["Succeeded", "Succeeded"]:
                return
            assert time.monotonic() < deadline, "the extensions' live objects kept changing"
            time.sleep(0.5)

    try:
        assert loop.tick().result == "success"  # applied: nothing kept
        until_both_reused()
        reused = loop.reuse.plans.reused
        inventories = [record.inventory_of(kube.get(cluster, record.ref(n))) for n in names]
        assert all(len(keys) > 20 for keys in inventories)

        # A commit no object of either extension changes with: both plans are reused, and
        # the records move to the new revision, their inventories as they were.
        notes = commit(root / "NOTES.md", "nothing the reconciler reads\n", "notes")
        assert loop.tick().result == "success"
        assert loop.reuse.plans.reused == reused + 2
        loop.outcomes.settle()
        assert applied_revisions(cluster, names) == [notes, notes]
        assert [record.inventory_of(kube.get(cluster, record.ref(n))) for n in names] == inventories

        # Someone else edits a field of the second extension's: its live object is a new one
        # in the cache, so it is planned again and the edit reverted; the first is reused.
        edit = {"data": {"ENABLE_TRAINING": "false"}}
        edited = kube.merge_patch(
            cluster, objects.reference(gateway), edit, field_manager="kubectl-edit"
        )
        version = edited["metadata"]["resourceVersion"]
        deadline = time.monotonic() + 30
        while (cache.lookup([gateway])[gateway] or {}).get("metadata", {}).get(
            "resourceVersion"
        ) != version:
            assert time.monotonic() < deadline, "the cache never saw the edit"
            time.sleep(0.05)
        drifted = loop.tick()
        assert (drifted.result, drifted.drifted) == ("success", 1), drifted.message
        assert loop.reuse.plans.reused == reused + 3
        live = kube.get(cluster, objects.reference(gateway)) or {}
        assert live["data"]["ENABLE_TRAINING"] == "true"

        # A commit that changes the first extension's config: its inputs changed, it is
        # planned and applied. The second was applied (its edit reverted) last tick: planned,
        # in sync, kept from now on; the first is reused again once its rollout is over.
        mirror = first.replace("  config:\n", "  config:\n    imageRegistry: m.io\n")
        two = commit(root / "infra" / "extension.yaml", mirror, "a mirror for the first")
        assert loop.tick().result == "success"
        assert loop.reuse.plans.reused == reused + 3
        loop.outcomes.settle()
        assert applied_revisions(cluster, names) == [two, two]
        images = {
            container["image"].split("/", 1)[0]
            for deployment in cache.of_kind("apps/v1", "Deployment")
            if deployment["metadata"]["namespace"] == namespace
            for container in deployment["spec"]["template"]["spec"]["containers"]
        }
        assert images == {"m.io"}, images
        until_both_reused()
    finally:
        cache.stop()
        delete_namespace(api_client, f"{namespace}-b")
