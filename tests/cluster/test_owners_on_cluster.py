"""One source owns an extension, on the real control plane (issue 26, item 6).

Repo A is applied; repo B, another folder declaring an Extension of the same name with fewer
objects, is refused by `apply`, `plan`, `diff --cluster` and a `sync` tick: exit non-zero with
both sources named, nothing pruned, the record not written. An invalid repo C of the same name
does not write its problems into A's record. `apply --adopt` of B takes the extension over: B
owns it (`status` says so) and what only A declared is pruned; A is then the one refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler import kube, objects
from reconciler.cli import main as cli
from reconciler.engine import owners, reconcile, record
from tests.helpers import example_repo, set_config

pytestmark = pytest.mark.cluster


def run(kubeconfig: str | None, *args: str) -> Result:
    options = ["--kubeconfig", kubeconfig] if kubeconfig else []
    return CliRunner().invoke(cli.main, [*args, *options])


def present(cluster: kube.Cluster, key: objects.Key) -> bool:
    """Still there and not being deleted."""
    found = kube.get(cluster, objects.reference(key))
    return found is not None and not found["metadata"].get("deletionTimestamp")


def test_a_second_source_is_refused_until_it_adopts_the_extension(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"o{namespace[-6:]}"
    a = example_repo(tmp_path / "a", name, namespace, jobs=False).resolve()
    b = example_repo(tmp_path / "b", name, namespace, jobs=False).resolve()
    shutil.rmtree(b / "deployments")  # fewer objects: A's deployments are B's prune candidates
    c = example_repo(tmp_path / "c", name, namespace, jobs=False).resolve()
    set_config(c, "inferenceRouterHA: false", "inferenceRouterHA: false\n    nodeSelectr: 3")

    first = run(cluster_kubeconfig, "apply", str(a))
    assert first.exit_code == 0, first.output
    applied = kube.get(cluster, record.ref(name))
    assert applied is not None
    assert applied["spec"]["owner"] == owners.identity(str(a)) == str(a)
    a_keys = record.inventory_of(applied)
    try:
        # B is refused: exit 1, both sources named, nothing pruned, the record untouched.
        refused = run(cluster_kubeconfig, "apply", str(b))
        assert refused.exit_code == 1, refused.output
        assert str(a) in refused.output and str(b) in refused.output, refused.output
        assert "--adopt" in refused.output
        assert f"extension {name}: Failed" in refused.output
        assert "to create" not in refused.output  # not even planned
        assert kube.get(cluster, record.ref(name)) == applied
        assert all(present(cluster, key) for key in a_keys)

        # `plan`, `diff --cluster` and a `sync` tick say the same, changing nothing.
        planned = run(cluster_kubeconfig, "plan", str(b))
        assert planned.exit_code == 2, planned.output
        assert str(a) in planned.output and str(b) in planned.output
        assert "to delete" not in planned.output  # no plan is shown: nothing was planned
        compared = run(cluster_kubeconfig, "diff", str(b), "--cluster", "-o", "json")
        assert compared.exit_code == 2, compared.output
        assert str(a) in compared.output and json.loads(compared.output)["changes"] == []
        ticked = run(cluster_kubeconfig, "sync", "--repo", str(b), "--watch", "--once")
        assert ticked.exit_code == 1, ticked.output
        assert str(a) in ticked.output and str(b) in ticked.output
        assert kube.get(cluster, record.ref(name)) == applied

        # An invalid repo of the same name: its problems never land in A's record.
        invalid = run(cluster_kubeconfig, "apply", str(c))
        assert invalid.exit_code == 1, invalid.output
        assert "nothing was applied" in invalid.output
        assert "problems not recorded" in invalid.output and str(a) in invalid.output
        assert "recorded the problems" not in invalid.output
        assert kube.get(cluster, record.ref(name)) == applied

        # --adopt: B owns it from now on, and what only A declared is pruned.
        plan_adopt = run(cluster_kubeconfig, "plan", str(b), "--adopt")
        assert plan_adopt.exit_code == 1, plan_adopt.output
        assert "--adopt makes this source" in plan_adopt.output
        adopted = run(cluster_kubeconfig, "apply", str(b), "--adopt")
        assert adopted.exit_code == 0, adopted.output
        assert "--adopt makes this source" in adopted.output and str(a) in adopted.output
        now = kube.get(cluster, record.ref(name))
        assert now is not None
        assert (now["spec"]["owner"], now["spec"]["source"]) == (str(b), str(b))
        b_keys = record.inventory_of(now)
        a_only = a_keys - b_keys
        assert any(k.kind == "Deployment" and k.name == "blue" for k in a_only), a_only
        for key in a_only:
            assert not present(cluster, key) or key.kind == "CustomResourceDefinition", key
        assert all(present(cluster, key) for key in b_keys)

        shown = run(cluster_kubeconfig, "status", "--output", "json")
        (mine,) = [s for s in json.loads(shown.output) if s["name"] == name]
        assert mine["owner"] == str(b)
        table = run(cluster_kubeconfig, "status").output
        assert any(line.startswith(name) and str(b) in line for line in table.splitlines())

        # And now A is the other source.
        back = run(cluster_kubeconfig, "apply", str(a))
        assert back.exit_code == 1, back.output
        assert f"owned by {b}" in back.output
        assert all(present(cluster, key) for key in b_keys)
    finally:
        reconcile.delete_extension(cluster, name, lambda _event: None)
