"""Render time of a generated repo (one extension, instance types, 1,000 workloads), reported
against the time to just load and validate the same repo, measured in the same run.

    python3 benchmarks/render_repo.py [--workloads 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reconciler import source
from reconciler.model import repo
from reconciler.render import render

EXTENSION = """\
apiVersion: gitops.mlext.io/v1alpha1
kind: Extension
metadata: {name: bench}
spec:
  clusterType: managedClusters
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
  - metadata: {name: gpu}
    spec:
      nodeSelector: {accelerator: nvidia}
      resources: {limits: {cpu: "2", memory: 8Gi, nvidia.com/gpu: 1}}
"""
JOB = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
name: job-{i}
command: python train.py --seed {i}
environment: {{image: python:3.11-slim}}
resources: {{instance_type: {instance_type}}}
"""
DEPLOYMENT = """\
apiVersion: gitops.mlext.io/v1alpha1
kind: Deployment
metadata: {{name: model-{i}}}
spec:
  model: {{path: https://models.example.com/m{i}.pkl}}
  environment: {{image: python:3.11-slim}}
  instance_type: small
  scale_settings: {{type: target_utilization, min_instances: 1, max_instances: 5}}
"""


def generate(root: Path, workloads: int) -> None:
    (root / "jobs").mkdir(parents=True)
    (root / "deployments").mkdir()
    (root / "extension.yaml").write_text(EXTENSION)
    (root / "instancetypes.yaml").write_text(INSTANCE_TYPES)
    for i in range(workloads):
        if i % 2:
            (root / "deployments" / f"m{i}.yaml").write_text(DEPLOYMENT.format(i=i))
        else:
            kind = "gpu" if i % 10 == 0 else "small"
            (root / "jobs" / f"j{i}.yaml").write_text(JOB.format(i=i, instance_type=kind))


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        generate(root, args.workloads)
        snapshot = source.DirectorySnapshot(root)
        loaded = repo.load(snapshot)
        assert loaded.valid, [str(p) for p in loaded.errors[:5]]

        def load_only() -> object:
            return repo.load(snapshot)

        def load_and_render() -> object:
            return render.render_repo(repo.load(snapshot).repo, snapshot, "bench")

        load_seconds = best_of(args.repeat, load_only)
        render_seconds = best_of(args.repeat, load_and_render)
        count = len(render.render_repo(loaded.repo, snapshot, "bench").objects)
    print(f"repo: 1 extension, 2 instance types, {args.workloads} workloads -> {count} objects")
    print(f"best of {args.repeat} runs each")
    print(f"load + validate:          {load_seconds * 1000:8.1f} ms (baseline)")
    print(f"load + validate + render: {render_seconds * 1000:8.1f} ms")
    print(f"render alone:             {(render_seconds - load_seconds) * 1000:8.1f} ms")
    print(f"ratio (load+render)/load: {render_seconds / load_seconds:8.2f}")


if __name__ == "__main__":
    main()
