"""`reconciler apply` of ~1,000 objects, initial and no-op re-apply, against `kubectl apply
--server-side` of the same objects on the same local control plane, measured in the same run.

Two copies of one generated repo (one extension, instance types, jobs and model deployments)
differ only in the extension's name and release namespace: kubectl applies the rendered objects
of one (plus the deployment key Secrets the reconciler generates, so both write the same
objects), the reconciler applies the other. kubectl is built from the same Kubernetes release as
the plane (`reconciler cluster build`). Both run as commands, as a user runs them; wall time and
peak memory of each command are reported. The CRDs are installed first (kubectl cannot apply a
CRD and its resources in one go).

    python3 benchmarks/apply_objects.py [--workloads 458] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from render_repo import EXTENSION, generate  # this folder, as the script runs from it

from reconciler import objects, source
from reconciler.localcluster import build, plane
from reconciler.localcluster.config import default_nodes
from reconciler.model import repo
from reconciler.render import auth, render


def make_repo(root: Path, workloads: int, name: str) -> Path:
    generate(root, workloads)
    (root / "extension.yaml").write_text(
        EXTENSION.replace("metadata: {name: bench}", f"metadata: {{name: {name}}}").replace(
            "clusterType: managedClusters",
            f"clusterType: managedClusters\n  releaseNamespace: {name}",
        )
    )
    return root


def rendered(root: Path) -> list[objects.Object]:
    snapshot = source.DirectorySnapshot(root)
    loaded = repo.load(snapshot)
    assert loaded.valid, [str(p) for p in loaded.errors[:5]]
    found = render.render_repo(loaded.repo, snapshot, "bench").objects
    for secrets in auth.repo_secrets(loaded.repo).values():
        found.extend(secrets)
    return objects.in_apply_order(found)


def timed(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command, which must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} failed:\n{output.decode()[-3000:]}")
    return seconds, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=458)
    parser.add_argument("--repeat", type=int, default=3, help="no-op re-applies, best of")
    args = parser.parse_args()
    binaries = build.ensure_built(lambda line: print(f"[build] {line}", file=sys.stderr))
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        with plane.running(default_nodes(), base / "plane") as state:
            kubeconfig = ["--kubeconfig", state.kubeconfig]
            kubectl_repo = make_repo(base / "kubectl-repo", args.workloads, "bench-kubectl")
            ours_repo = make_repo(base / "reconciler-repo", args.workloads, "bench-reconciler")
            shared = {"CustomResourceDefinition", "InstanceType"}
            objs = rendered(kubectl_repo)
            rest = [o for o in objs if o["kind"] not in shared]
            (base / "objects.yaml").write_text(objects.to_yaml(rest))
            kubectl = [*binaries.kubectl("apply", "--server-side", *kubeconfig), "-f"]
            kubectl.append(str(base / "objects.yaml"))
            reconciler = [sys.executable, "-m", "reconciler", "apply", *kubeconfig]
            ours_count = len(rendered(ours_repo))

            r_first = timed([*reconciler, str(ours_repo)])
            k_first = timed(kubectl)
            k_again = min(timed(kubectl) for _ in range(args.repeat))
            r_again = min(timed([*reconciler, str(ours_repo)]) for _ in range(args.repeat))
    print(
        f"reconciler: {ours_count} objects, kubectl: {len(rest)} "
        f"(without the shared CRDs and instance types); {binaries.version} plane"
    )
    print(f"{'':28}{'kubectl (baseline)':>20}{'reconciler':>14}{'ratio':>8}")
    for label, k, r in (
        ("initial apply, s", k_first, r_first),
        (f"no-op re-apply (best of {args.repeat}), s", k_again, r_again),
    ):
        print(f"{label:28}{k[0]:20.2f}{r[0]:14.2f}{r[0] / k[0]:8.2f}")
    for label, k, r in (("initial, peak RSS MiB", k_first, r_first),
                        ("no-op, peak RSS MiB", k_again, r_again)):  # fmt: skip
        print(f"{label:28}{k[1] / 1024:20.0f}{r[1] / 1024:14.0f}{r[1] / k[1]:8.2f}")


if __name__ == "__main__":
    main()
