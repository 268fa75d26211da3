"""`reconciler sync` on the real control plane with local git repos (issue 8's "must show").

The loop runs as a real process (`python -m reconciler sync`), as a user runs it, following a git
repo in a temporary folder; the tests commit to that repo and watch the cluster and the loop's
own /metrics. The two-process test runs the leader election for real: SIGKILL the leader, the
standby takes over after the lease runs out.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import git
import pytest
from click.testing import CliRunner
from kubernetes import client

from reconciler import kube, objects, source
from reconciler.cli import main as cli
from reconciler.engine import record
from reconciler.render import render
from tests.cluster.kubehelpers import requests_by_verb, wait_for_cleanup, wait_until
from tests.helpers import example_repo, load, set_config

pytestmark = pytest.mark.cluster
INTERVAL = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def commit(root: Path, message: str) -> str:
    # Closed: GitPython keeps `git cat-file` processes per Repo, a ResourceWarning when collected.
    with git.Repo.init(root) if not (root / ".git").exists() else git.Repo(root) as repository:
        repository.git.add(A=True)
        repository.index.commit(message)
        return str(repository.head.commit.hexsha)


def git_repo(tmp_path: Path, name: str, namespace: str) -> tuple[Path, str]:
    root = example_repo(tmp_path, name, namespace, jobs=False)
    git.Repo.init(root, initial_branch="main").close()
    return root, commit(root, "first")


class Sync:
    """A `reconciler sync` process and its /metrics."""

    def __init__(self, kubeconfig: str | None, root: Path, cache: Path, *extra: str) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-m", "reconciler", "sync",
            "--repo", str(root),
            "--interval", f"{INTERVAL}s", "--cache-dir", str(cache),
            "--metrics-addr", f"127.0.0.1:{self.port}", *extra,
        ]  # fmt: skip
        if kubeconfig:
            command += ["--kubeconfig", kubeconfig]
        self.log = cache.parent / f"sync-{self.port}.log"
        with self.log.open("w") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=cache.parent
            )

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def value(self, sample: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def applied_revision(cluster: kube.Cluster, name: str) -> str:
    try:
        live = kube.get(cluster, record.ref(name))
    except kube.KubeError:  # the record CRD is not served yet
        return ""
    return str(((live or {}).get("status") or {}).get("lastAppliedRevision", ""))


def deployment(cluster: kube.Cluster, namespace: str, name: str) -> objects.Object | None:
    return kube.get(
        cluster, objects.reference(objects.Key("apps/v1", "Deployment", namespace, name))
    )


def status_json(kubeconfig: str | None) -> list[dict[str, object]]:
    options = ["--kubeconfig", kubeconfig] if kubeconfig else []
    result = CliRunner().invoke(cli.main, ["status", "--output", "json", *options])
    loaded: list[dict[str, object]] = json.loads(result.output)
    return loaded


def test_sync_applies_commits_prunes_reverts_drift_and_keeps_the_last_good_revision(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"s{namespace[-6:]}"
    root, first = git_repo(tmp_path, name, namespace)
    sync = Sync(
        cluster_kubeconfig, root, tmp_path / "cache", "--branch", "main", "--log-format", "json"
    )
    try:
        wait_until(lambda: applied_revision(cluster, name), lambda r: r == first, "1st", 90)
        assert deployment(cluster, namespace, "aml-operator") is not None

        # A commit that disables training: applied within one interval, training pruned.
        set_config(root, "enableTraining: true", "enableTraining: false")
        second = commit(root, "no training")
        committed = time.monotonic()
        wait_until(lambda: applied_revision(cluster, name), lambda r: r == second, "2nd", 60)
        assert time.monotonic() - committed < INTERVAL * 1.1 + 15  # one tick + one apply
        gone = wait_until(
            lambda: deployment(cluster, namespace, "aml-operator"),
            lambda d: d is None or bool(d["metadata"].get("deletionTimestamp")),
            "training pruned",
            30,
        )
        assert gone is None or gone["metadata"].get("deletionTimestamp")

        # An owned Deployment deleted by hand comes back (a watch event triggers the tick).
        router = "azureml-fe-v2"
        kube.delete(
            cluster, objects.reference(objects.Key("apps/v1", "Deployment", namespace, router))
        )
        deleted = time.monotonic()
        wait_until(lambda: deployment(cluster, namespace, router), bool, "router back", 30)
        assert time.monotonic() - deleted < INTERVAL + 10

        # An invalid commit changes nothing; status names the problem (file, line, field).
        generation = deployment(cluster, namespace, router)["metadata"]["generation"]  # type: ignore[index]
        blue = root / "deployments" / "blue.yaml"
        blue.write_text(blue.read_text().replace("max_instances: 5", "max_instances: lots"))
        bad = commit(root, "broken")

        def problems() -> list[str]:
            found = [s for s in status_json(cluster_kubeconfig) if s["name"] == name]
            return list(found[0]["reasons"]) if found else []  # type: ignore[call-overload]

        reasons = wait_until(problems, lambda r: any("lots" in p for p in r), "problem", 30)
        assert any("deployments/blue.yaml:27: scale_settings.max_instances" in p for p in reasons)
        live = kube.get(cluster, record.ref(name))
        assert live is not None
        assert live["status"]["lastAppliedRevision"] == second
        assert live["status"]["lastAttemptedRevision"] == bad
        assert deployment(cluster, namespace, router)["metadata"]["generation"] == generation  # type: ignore[index]

        # The rejected revision marked the extension Failed: its ready gauge says so.
        failed = (
            f'mlext_reconciler_extension_provisioning_state{{extension="{name}",state="Failed"}}'
        )
        wait_until(lambda: sync.value(failed), lambda v: v == 1, "Failed in the metrics", 15)
        text = sync.metrics()
        assert f'mlext_reconciler_extension_ready{{extension="{name}"}} 0.0' in text
        duration = f'mlext_reconciler_reconcile_duration_seconds_count{{extension="{name}"}}'
        assert sync.value(duration) >= 2
        assert sync.value('mlext_reconciler_tick_duration_seconds_count{result="invalid"}') >= 1
        assert "mlext_reconciler_build_info{" in text
        assert f'mlext_reconciler_last_applied_revision_info{{revision="{second}"' in text
        assert sync.value(f'mlext_reconciler_managed_objects{{extension="{name}"}}') > 50
        assert sync.value('mlext_reconciler_reconciles_total{result="invalid"}') >= 1
        assert sync.value(f'mlext_reconciler_pruned_objects_total{{extension="{name}"}}') > 0
        assert sync.value("mlext_reconciler_git_fetch_duration_seconds_count") >= 3
    finally:
        assert sync.stop() == 0, sync.log.read_text()[-3000:]
    # --log-format json: every line one JSON object; the engine's events carry their fields.
    logged = [json.loads(line) for line in sync.log.read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in logged)
    applied = [line for line in logged if line.get("event") == "applied"]
    assert applied and all(line["extension"] == name for line in applied)


def kinds_rendered(root: Path) -> set[str]:
    """The API server's resource names of every kind the repo renders, and the record's."""
    loaded = load(root)
    assert loaded.valid, loaded.problems
    rendered = render.render_repo(loaded.repo, source.DirectorySnapshot(root), "x").objects
    plural = {o["kind"].lower() + ("es" if o["kind"].endswith("s") else "s") for o in rendered}
    return plural | {"extensionstatuses", "customresourcedefinitions"}


def test_an_in_sync_loop_sends_no_request_and_corrects_drift_within_a_second(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    api_client: client.ApiClient,
) -> None:
    name = f"z{namespace[-6:]}"
    root, first = git_repo(tmp_path, name, namespace)
    resources = kinds_rendered(root)
    sync = Sync(cluster_kubeconfig, root, tmp_path / "cache", "--branch", "main")
    successes = 'mlext_reconciler_reconciles_total{result="success"}'

    def tick_requests() -> float:
        lines = sync.metrics().splitlines()
        found = [line for line in lines if line.startswith("mlext_reconciler_tick_api_requests{")]
        return sum(float(line.rsplit(" ", 1)[1]) for line in found) if found else -1.0

    try:
        wait_until(lambda: applied_revision(cluster, name), lambda r: r == first, "1st", 90)
        wait_until(
            lambda: [s["provisioningState"] for s in status_json(cluster_kubeconfig)
                     if s["name"] == name],
            lambda states: states == ["Succeeded"],
            "the extension to be Succeeded",
            120,
        )  # fmt: skip
        wait_until(tick_requests, lambda n: n == 0, "an in-sync tick", 30)
        # The server's counters are cluster-wide: let the namespace controller finish deleting
        # earlier tests' namespaces (it lists and deletes what they held) before counting.
        wait_for_cleanup(api_client, resources)

        # In sync: ticks read the live cache; the API server sees no request but the watches.
        asked = requests_by_verb(api_client, resources)
        ticks = sync.value(successes)
        wait_until(lambda: sync.value(successes), lambda n: n >= ticks + 2, "2 more ticks", 30)
        sent = requests_by_verb(api_client, resources) - asked
        # The counters are the whole server's, and the real node's kube-proxy, CoreDNS and
        # kubelet watch Services, EndpointSlices, Pods and ConfigMaps too: an informer of theirs
        # whose watch expires lists again (CI saw one LIST of services). The loop's own count of
        # its requests (tick_api_requests) is exact: none.
        shared = {"services", "endpointslices", "endpoints", "pods", "configmaps", "secrets"}
        sent = collections.Counter({k: n for k, n in sent.items() if k[1] not in shared})
        assert {verb for verb, _ in sent} <= {"WATCH"}, sent
        assert tick_requests() == 0
        assert sync.value("mlext_reconciler_cache_objects") > 50
        assert sync.value("mlext_reconciler_cache_bytes") > 0

        # A deleted object comes back at once: its watch event triggers the tick.
        gateway = objects.reference(objects.Key("v1", "ConfigMap", namespace, "gateway"))
        kube.delete(cluster, gateway)
        deleted = time.monotonic()
        wait_until(lambda: kube.get(cluster, gateway), bool, "gateway back", 30)
        back = time.monotonic() - deleted

        # `kubectl edit` of a field we own: another manager takes it over; taken back at once.
        edit = {"data": {"ENABLE_TRAINING": "false"}}
        kube.merge_patch(cluster, gateway, edit, field_manager="kubectl-edit")
        edited = time.monotonic()
        wait_until(
            lambda: (kube.get(cluster, gateway) or {}).get("data", {}).get("ENABLE_TRAINING"),
            lambda value: value == "true",
            "the edit reverted",
            30,
        )
        reverted = time.monotonic() - edited
        assert back < 1.0 and reverted < 1.0, (back, reverted)
        drifted = f'mlext_reconciler_drifted_objects{{extension="{name}"}}'
        assert sync.value('mlext_reconciler_api_requests_total{verb="patch"}') >= 2
        assert "mlext_reconciler_cache_relists_total" in sync.metrics()
        assert drifted in sync.metrics()
    finally:
        assert sync.stop() == 0, sync.log.read_text()[-3000:]


def once(kubeconfig: str | None, root: Path, cache: Path, *extra: str) -> str:
    command = [sys.executable, "-m", "reconciler", "sync", "--repo", str(root), "--once"]
    command += ["--cache-dir", str(cache), *extra]
    if kubeconfig:
        command += ["--kubeconfig", kubeconfig]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_drift_report_only_records_and_suspend_holds_an_extension(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"d{namespace[-6:]}"
    root, _ = git_repo(tmp_path, name, namespace)
    cache = tmp_path / "cache"
    once(cluster_kubeconfig, root, cache)
    gateway = objects.reference(objects.Key("v1", "ConfigMap", namespace, "gateway"))
    # `kubectl edit` of a field the reconciler owns: the edit takes the field over.
    edit = {"data": {"ENABLE_TRAINING": "false"}}
    kube.merge_patch(cluster, gateway, edit, field_manager="kubectl-edit")

    once(cluster_kubeconfig, root, cache, "--drift", "report")
    live = kube.get(cluster, record.ref(name))
    assert live is not None and live["status"]["drift"]["count"] == 1
    assert live["status"]["drift"]["entries"][0]["name"] == "gateway"
    assert kube.get(cluster, gateway)["data"]["ENABLE_TRAINING"] == "false"  # type: ignore[index]

    once(cluster_kubeconfig, root, cache)  # correct mode: reverted, report cleared
    assert kube.get(cluster, gateway)["data"]["ENABLE_TRAINING"] == "true"  # type: ignore[index]
    assert "drift" not in (kube.get(cluster, record.ref(name)) or {})["status"]

    options = ["--kubeconfig", cluster_kubeconfig] if cluster_kubeconfig else []
    held = CliRunner().invoke(cli.main, ["extension", "suspend", name, *options])
    assert held.exit_code == 0, held.output
    kube.delete(cluster, gateway)
    once(cluster_kubeconfig, root, cache)
    assert kube.get(cluster, gateway) is None  # suspended: not re-created
    resumed = CliRunner().invoke(cli.main, ["extension", "resume", name, *options])
    assert resumed.exit_code == 0, resumed.output
    once(cluster_kubeconfig, root, cache)
    assert kube.get(cluster, gateway) is not None


def test_two_leader_elected_syncs_one_writes_and_the_standby_takes_over(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"l{namespace[-6:]}"
    root, first = git_repo(tmp_path, name, namespace)
    election = ["--leader-elect", "--lease-namespace", namespace, "--lease-duration", "3s"]
    syncs = [Sync(cluster_kubeconfig, root, tmp_path / f"cache{i}", *election) for i in range(2)]
    try:
        wait_until(lambda: applied_revision(cluster, name), lambda r: r == first, "1st", 90)
        leaders = wait_until(
            lambda: [s.value("mlext_reconciler_leader") for s in syncs],
            lambda v: sorted(v) == [0.0, 1.0],
            "exactly one leader",
            30,
        )
        leader, standby = (syncs[0], syncs[1]) if leaders[0] == 1.0 else (syncs[1], syncs[0])
        time.sleep(INTERVAL)  # a few ticks' time: the standby must still not reconcile
        assert standby.value('mlext_reconciler_reconciles_total{result="success"}') == 0
        assert leader.value('mlext_reconciler_reconciles_total{result="success"}') >= 1

        os.kill(leader.process.pid, signal.SIGKILL)  # no release: the lease must run out
        killed = time.monotonic()
        set_config(root, "enableTraining: true", "enableTraining: false")
        second = commit(root, "after the failover")
        wait_until(lambda: standby.value("mlext_reconciler_leader"), bool, "takeover", 20)
        assert time.monotonic() - killed < 3.0 + 3.0  # the lease duration + a retry period
        wait_until(lambda: applied_revision(cluster, name), lambda r: r == second, "2nd", 60)
    finally:
        for sync in syncs:
            sync.process.kill() if sync.process.poll() is None else None
            sync.process.wait(timeout=30)


def test_watch_reconciles_a_work_tree_on_save(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"w{namespace[-6:]}"
    root, _ = git_repo(tmp_path, name, namespace)
    # A long interval: only the file watch can explain a reconcile within seconds.
    sync = Sync(cluster_kubeconfig, root, tmp_path / "cache", "--watch", "--interval", "10m")
    gateway = objects.reference(objects.Key("v1", "ConfigMap", namespace, "gateway"))

    def training() -> str:
        try:
            return str(((kube.get(cluster, gateway) or {}).get("data") or {})["ENABLE_TRAINING"])
        except (KeyError, kube.KubeError):
            return ""

    try:
        wait_until(training, lambda v: v == "true", "first apply", 90)
        set_config(root, "enableTraining: true", "enableTraining: false")  # saved, not committed
        wait_until(training, lambda v: v == "false", "the saved change applied", 30)
    finally:
        assert sync.stop() == 0, sync.log.read_text()[-3000:]


def test_controller_serves_probes_and_releases_its_lease_on_sigterm(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    """`reconciler controller` as the installed Deployment runs it (leader election on), here
    with the kubeconfig in $KUBECONFIG as a pod has its service account."""
    name = f"c{namespace[-6:]}"
    root, first = git_repo(tmp_path, name, namespace)
    health, metrics = free_port(), free_port()
    command = [
        sys.executable, "-m", "reconciler", "controller", "--repo", str(root),
        "--interval", "1m", "--cache-dir", str(tmp_path / "cache"),
        "--health-addr", f"127.0.0.1:{health}", "--metrics-addr", f"127.0.0.1:{metrics}",
        "--lease-namespace", namespace,
    ]  # fmt: skip
    env = {**os.environ, **({"KUBECONFIG": cluster_kubeconfig} if cluster_kubeconfig else {})}
    log = tmp_path / "controller.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "mlext-reconciler", "namespace": namespace}}  # fmt: skip

    def probe(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}{path}", timeout=5) as r:
                return int(r.status)
        except OSError:
            return 0

    try:
        wait_until(lambda: probe("/healthz"), lambda s: s == 200, "healthz", 30)
        wait_until(lambda: applied_revision(cluster, name), lambda r: r == first, "applied", 90)
        assert probe("/readyz") == 200
        holder = (kube.get(cluster, lease) or {})["spec"]["holderIdentity"]
        assert holder, "the controller reconciled without holding the lease"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    # Released, so a standby takes over at once instead of after the lease duration.
    assert not (kube.get(cluster, lease) or {})["spec"].get("holderIdentity")
