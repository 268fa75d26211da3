"""The GitOps loop's tick against the real control plane, in process (`gitops.controller`).

A tick during which a newer trigger came (a push while it was still carrying out an earlier
commit) leaves the extensions it has not reached, and those it planned with nothing to apply,
to the next tick, which starts at once; for at most `controller.MAX_DEFER` seconds in a row, so
every extension is reconciled. The cut tick's outcome writes land while the next one starts.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import git
import pytest
from kubernetes import client

from reconciler import kube, source
from reconciler.engine import record, recordstore
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


def test_a_tick_a_newer_trigger_came_during_leaves_the_rest_to_the_next_one(
    tmp_path: Path, namespace: str, cluster: kube.Cluster, api_client: client.ApiClient
) -> None:
    # Two extensions (the example's, without workloads), in two namespaces.
    names = [f"a{namespace[-6:]}", f"b{namespace[-6:]}"]
    root = example_repo(tmp_path, names[0], namespace, jobs=False)
    shutil.rmtree(root / "deployments")
    first = (root / "infra" / "extension.yaml").read_text()
    second = first.replace(f"name: {names[0]}", f"name: {names[1]}")
    (root / "infra" / "second.yaml").write_text(
        second.replace(f"releaseNamespace: {namespace}", f"releaseNamespace: {namespace}-b")
    )
    repository = git.Repo.init(root)
    repository.git.add(A=True)
    one = repository.index.commit("two extensions").hexsha
    now = [1000.0]
    loop = controller.Controller(
        cluster,
        lambda: source.DirectorySnapshot(root),
        controller.Settings(interval=3600),
        loopmetrics.ControllerMetrics(),
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
        core = client.CoreV1Api(api_client)
        try:
            core.delete_namespace(f"{namespace}-b", propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status != 404:
                raise
