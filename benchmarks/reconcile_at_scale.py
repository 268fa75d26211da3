"""Reconcile at scale: `reconciler apply` and the `reconciler sync` loop on 1,000 and 10,000
objects, against `kubectl apply --server-side` of the same objects on the same plane, same run.

For each size a fresh local plane is started, and its kube-controller-manager, scheduler and
kwok are stopped first, so what is measured is the API server's work for the applies and not
the simulated rollout of thousands of pods competing for the same 2 cores (health is not what
this measures). Two generated repos (3 extensions, each in its own namespace, instance types,
mostly model deployments and jobs) differ only in their names: kubectl applies the rendered
objects of one (with the key Secrets the reconciler generates, so both write the same objects;
their managed-by label says kubectl, as objects someone else applies do on a real cluster, so
the reconciler's label-selected LISTs and watches do not take them for its own), the reconciler
the other. Reported, per size:

- initial apply, reconciler / kubectl (goal <= 1.0), and the no-op re-apply of each (the
  reconciler's with its render cache, `cli/rendercache.py`, as a user has it); the
  reconciler's no-op as a share of its initial apply (goal <= 5 %), and the requests the API
  server counted for it by verb (`apiserver_request_total`: LISTs only, no per-object request);
- the sync loop on the same repo (a git repo): API requests per in-sync tick, counted by the
  loop (`mlext_reconciler_tick_api_requests`) and by the API server (goal 0); a one-object
  change (a deployment's image) from the webhook's POST to the change being live (goal
  <= 1 s); the loop's RSS and the cache's bytes per object;
- how each figure grows from the first size to the last (ratio of per-object times: <= 1 is
  linear or better).

    python3 benchmarks/reconcile_at_scale.py [--sizes 1000,10000] [--repeat 2]

Every figure of a run is printed with the load average, since the machine is shared.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import git
from apply_objects import rendered, timed  # this folder, as the script runs from it

from reconciler import kube, objects
from reconciler.gitops import webhook
from reconciler.localcluster import build, plane
from reconciler.localcluster.config import default_nodes

EXTENSIONS = 3
EXTENSION = """\
apiVersion: gitops.mlext.io/v1alpha1
kind: Extension
metadata: {{name: {name}}}
spec:
  clusterType: managedClusters
  releaseNamespace: {name}
  config:
    enableTraining: true
    enableInference: true
    inferenceRouterServiceType: ClusterIP
    allowInsecureConnections: true
"""
INSTANCE_TYPES = """\
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceTypeList
items:
  - metadata: {name: small}
    spec: {resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: "1", memory: 2Gi}}}
"""
JOB = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
name: job-{i}
command: python train.py --seed {i}
environment: {{image: python:3.11-slim}}
compute: azureml:{extension}
resources: {{instance_type: small}}
"""
DEPLOYMENT = """\
apiVersion: gitops.mlext.io/v1alpha1
kind: Deployment
metadata: {{name: model-{i}}}
spec:
  compute: {extension}
  model: {{path: https://models.example.com/m{i}.pkl}}
  environment: {{image: {image}}}
  instance_type: small
  scale_settings: {{type: target_utilization, min_instances: 1, max_instances: 5}}
"""
IMAGE = "python:3.11-slim"
SECRET = b"bench-webhook-secret"


def load_average() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def generate(root: Path, prefix: str, workloads: int) -> Path:
    """A repo of EXTENSIONS extensions named `{prefix}-N` and `workloads` workloads spread
    over them, three deployments for every two jobs."""
    names = [f"{prefix}-{n}" for n in range(EXTENSIONS)]
    (root / "deployments").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "extensions.yaml").write_text(
        "---\n".join(EXTENSION.format(name=name) for name in names)
    )
    (root / "instancetypes.yaml").write_text(INSTANCE_TYPES)
    for i in range(workloads):
        extension = names[i % EXTENSIONS]
        if i % 5 < 3:
            text = DEPLOYMENT.format(i=i, extension=extension, image=IMAGE)
            (root / "deployments" / f"m{i}.yaml").write_text(text)
        else:
            (root / "jobs" / f"j{i}.yaml").write_text(JOB.format(i=i, extension=extension))
    return root


def workloads_for(target: int, folder: Path) -> int:
    """How many workloads make about `target` objects (objects grow linearly with them)."""
    counts = []
    for workloads in (50, 100):
        counts.append(len(rendered(generate(folder / f"probe-{workloads}", "probe", workloads))))
    per_workload = (counts[1] - counts[0]) / 50
    return max(10, round((target - (counts[0] - 50 * per_workload)) / per_workload))


def server_requests(cluster: kube.Cluster) -> collections.Counter[str]:
    """Requests to resources the API server has served, by verb (its own counter)."""
    request = cluster.api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    text = cluster.api.call_api(*request).read().decode()
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if not labels.get("resource") or labels.get("resource") in ("events", "leases"):
            continue
        verb = labels["verb"] + ("-dry-run" if labels.get("dry_run") else "")
        counts[verb] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Loop:
    """A `reconciler sync` process following a local git repo, with metrics and a webhook."""

    def __init__(self, root: Path, kubeconfig: str, work: Path) -> None:
        self.metrics_port, self.hook_port = free_port(), free_port()
        (work / "secret").write_bytes(SECRET)
        command = [
            sys.executable, "-m", "reconciler", "sync", "--repo", str(root), "--branch", "main",
            "--interval", "10s", "--cache-dir", str(work / "cache"), "--kubeconfig", kubeconfig,
            "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
            "--webhook-addr", f"127.0.0.1:{self.hook_port}",
            "--webhook-secret-file", str(work / "secret"),
        ]  # fmt: skip
        self.log = (work / "sync.log").open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def samples(self) -> dict[str, float]:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=30) as response:
                text = response.read().decode()
        except OSError:
            return {}
        found = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                found[name] = float(value)
        return found

    def ticks(self) -> float:
        return self.samples().get('mlext_reconciler_reconciles_total{result="success"}', 0.0)

    def tick_requests(self) -> float:
        found = self.samples()
        return sum(v for k, v in found.items() if k.startswith("mlext_reconciler_tick_api_"))

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def hook(self) -> None:
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.hook_port}/hook",
            data=body,
            headers={
                webhook.SIGNATURE_HEADER: webhook.signature(SECRET, body),
                webhook.EVENT_HEADER: "push",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)
        self.log.close()


def wait(probe: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Figures:
    size: int
    objects: int = 0
    kubectl_first: float = 0.0
    kubectl_again: float = 0.0
    ours_first: float = 0.0
    ours_again: float = 0.0
    ours_first_rss: float = 0.0
    noop_requests: dict[str, int] = field(default_factory=dict)
    tick_requests_loop: float = 0.0
    tick_requests_server: dict[str, int] = field(default_factory=dict)
    first_tick: float = 0.0
    change_seconds: list[float] = field(default_factory=list)  # the first extension's
    last_change_seconds: list[float] = field(default_factory=list)  # the last extension's
    loop_rss: float = 0.0
    cache_objects: float = 0.0
    cache_bytes: float = 0.0
    load: list[str] = field(default_factory=list)


def run_size(size: int, repeat: int, binaries: build.Binaries, folder: Path) -> Figures:
    figures = Figures(size)
    workloads = workloads_for(size, folder)
    with plane.running(default_nodes(), folder / "plane") as state:
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            plane.kill(component, Path(state.state_dir))
        cluster = kube.connect(state.kubeconfig)
        kubeconfig = ["--kubeconfig", state.kubeconfig]
        kubectl_repo = generate(folder / "kubectl-repo", "kubectl", workloads)
        ours_repo = generate(folder / "ours-repo", "ours", workloads)
        git.Repo.init(ours_repo, initial_branch="main")
        repository = git.Repo(ours_repo)
        repository.git.add(A=True)
        repository.index.commit("bench")
        figures.objects = len(rendered(ours_repo))
        objs = rendered(kubectl_repo)
        for obj in objs:
            obj["metadata"].setdefault("labels", {})[objects.MANAGED_BY_LABEL] = "kubectl"
        # The CRDs first (kubectl cannot apply a CRD and its resources in one go); the instance
        # types are cluster-scoped and named alike in both repos, so the reconciler applies them.
        shared = {"CustomResourceDefinition", "InstanceType"}
        crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
        (folder / "crds.yaml").write_text(objects.to_yaml(crds))
        (folder / "objects.yaml").write_text(
            objects.to_yaml([o for o in objs if o["kind"] not in shared])
        )
        kubectl = [*binaries.kubectl("apply", "--server-side", *kubeconfig), "-f"]
        timed([*kubectl, str(folder / "crds.yaml")])
        timed([*binaries.kubectl("wait", "--for=condition=Established", "crd", "--all",
                                 *kubeconfig)])  # fmt: skip
        # --force-conflicts: the CRDs kubectl installed become the reconciler's too.
        reconciler = [sys.executable, "-m", "reconciler", "apply", *kubeconfig, str(ours_repo)]
        reconciler.append("--force-conflicts")

        figures.load.append(f"before the initial applies: {load_average()}")
        figures.kubectl_first = timed([*kubectl, str(folder / "objects.yaml")])[0]
        figures.ours_first, rss = timed(reconciler)
        figures.ours_first_rss = rss / 1024
        figures.load.append(f"before the no-op applies: {load_average()}")
        figures.kubectl_again = min(
            timed([*kubectl, str(folder / "objects.yaml")])[0] for _ in range(repeat)
        )
        agains = []
        for _ in range(repeat):
            before = server_requests(cluster)
            agains.append(timed(reconciler)[0])
            figures.noop_requests = dict(server_requests(cluster) - before)
        figures.ours_again = min(agains)

        figures.load.append(f"before the sync loop: {load_average()}")
        loop = Loop(ours_repo, state.kubeconfig, folder)
        try:
            started = time.monotonic()
            wait(lambda: loop.ticks() >= 1, "the loop's first tick", 900)
            figures.first_tick = time.monotonic() - started
            wait(lambda: loop.tick_requests() == 0, "an in-sync tick", 300)
            ticks = loop.ticks()
            before = server_requests(cluster)
            loop.hook()  # ticks now rather than at the interval, twice
            wait(lambda: loop.ticks() >= ticks + 1, "an in-sync tick", 300)
            loop.hook()
            wait(lambda: loop.ticks() >= ticks + 2, "an in-sync tick", 300)
            figures.tick_requests_server = dict(server_requests(cluster) - before)
            figures.tick_requests_loop = loop.tick_requests()
            samples = loop.samples()
            figures.cache_objects = samples.get("mlext_reconciler_cache_objects", 0.0)
            figures.cache_bytes = samples.get("mlext_reconciler_cache_bytes", 0.0)
            figures.loop_rss = loop.rss_mib()
            figures.load.append(f"before the one-object changes: {load_average()}")
            for attempt in range(repeat + 1):
                figures.change_seconds.append(
                    one_change(cluster, loop, repository, ours_repo, attempt)
                )
            for attempt in range(repeat + 1):  # the last extension's: planned after the others
                figures.last_change_seconds.append(
                    one_change(cluster, loop, repository, ours_repo, 10 + attempt, EXTENSIONS - 1)
                )
        finally:
            loop.stop()
    return figures


def one_change(
    cluster: kube.Cluster,
    loop: Loop,
    repository: git.Repo,
    root: Path,
    attempt: int,
    extension: int = 0,
) -> float:
    """Seconds from the webhook's POST to a commit's one changed object being live: the
    image of model deployment `extension` (workload i goes to extension i % EXTENSIONS)."""
    path = root / "deployments" / f"m{extension}.yaml"
    image = f"python:3.{12 + attempt}-slim"
    path.write_text(re.sub(r"image: [^}]+", f"image: {image}", path.read_text()))
    repository.git.add(A=True)
    repository.index.commit(f"model-{extension} on {image}")
    key = objects.Key("apps/v1", "Deployment", f"ours-{extension}", f"model-{extension}")

    def live_image() -> str:
        live = kube.get(cluster, objects.reference(key)) or {}
        containers = live.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
        return str((containers or [{}])[0].get("image"))

    started = time.monotonic()
    loop.hook()
    wait(lambda: live_image() == image, "the changed deployment", 300)
    return time.monotonic() - started


def report(all_figures: list[Figures]) -> None:
    for f in all_figures:
        print(f"\n== {f.objects} objects ({f.size} asked), {EXTENSIONS} extensions ==")
        for line in f.load:
            print(f"  {line}")
        print(f"{'':34}{'kubectl':>10}{'reconciler':>12}{'ratio':>8}")
        print(f"{'initial apply, s':34}{f.kubectl_first:10.2f}{f.ours_first:12.2f}"
              f"{f.ours_first / f.kubectl_first:8.2f}")  # fmt: skip
        print(f"{'no-op re-apply (best), s':34}{f.kubectl_again:10.2f}{f.ours_again:12.2f}"
              f"{f.ours_again / f.kubectl_again:8.2f}")  # fmt: skip
        share = 100 * f.ours_again / f.ours_first
        print(f"no-op apply / initial apply (reconciler): {share:.1f} %")
        print(f"no-op apply, requests the API server counted: {f.noop_requests}")
        print(f"initial apply peak RSS: {f.ours_first_rss:.0f} MiB")
        print(f"sync: first tick {f.first_tick:.1f} s; requests per in-sync tick: "
              f"{f.tick_requests_loop:g} (loop), server over 2 ticks: "
              f"{f.tick_requests_server or 'none'}")  # fmt: skip
        changes = ", ".join(f"{s:.2f}" for s in f.change_seconds)
        print(f"one-object change, webhook POST to live: {changes} s")
        changes = ", ".join(f"{s:.2f}" for s in f.last_change_seconds)
        print(f"  the same, in the last extension (planned after the others): {changes} s")
        per = f.cache_bytes / f.cache_objects if f.cache_objects else 0
        print(f"loop RSS {f.loop_rss:.0f} MiB; cache {f.cache_objects:.0f} objects, "
              f"{per:.0f} B per object (compact JSON)")  # fmt: skip
    if len(all_figures) > 1:
        a, b = all_figures[0], all_figures[-1]
        scale = b.objects / a.objects
        print(f"\n== growth {a.objects} -> {b.objects} objects (x{scale:.1f}); "
              "time ratio / object ratio (<= 1: linear or better) ==")  # fmt: skip
        for label, x, y in (
            ("initial apply", a.ours_first, b.ours_first),
            ("no-op apply", a.ours_again, b.ours_again),
            ("kubectl initial", a.kubectl_first, b.kubectl_first),
            ("one-object change", min(a.change_seconds), min(b.change_seconds)),
            ("loop RSS", a.loop_rss, b.loop_rss),
        ):
            print(f"{label:20}{x:10.2f}{y:10.2f}   x{y / x:6.2f}  ({y / x / scale:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    binaries = build.ensure_built(lambda line: print(f"[build] {line}", file=sys.stderr))
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            print(f"[bench] {size} objects: {load_average()}", file=sys.stderr)
            # The render cache is on, as for a user (the no-op apply starts from the units
            # the initial apply rendered), in this run's folder rather than the user's.
            os.environ["RECONCILER_CACHE_DIR"] = str(Path(folder) / "render-cache")
            results.append(run_size(size, args.repeat, binaries, Path(folder)))
    report(results)


if __name__ == "__main__":
    main()
