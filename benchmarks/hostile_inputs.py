"""Hostile commits against the `reconciler sync` loop: how long it takes to refuse them and what
they cost its memory, against an ordinary commit's apply in the same run.

A local plane (its controller-manager, scheduler and kwok stopped: health is not measured) and a
git repo holding the bundled example (`manifests/`). One `reconciler sync` process follows the
repo and is woken by its signed webhook after each commit:

1. baseline: a valid change (an instance type's CPU request) until it is applied;
2. an alias bomb (ten anchors, each a list of ten aliases to the one before: 10^10 values);
3. 60,000 nested `[` (used to segfault the C loader), then 2,000 block-indented levels (2 MB);
4. a commit that removes them, until it is applied again: the loop stayed up throughout.

For each commit: seconds from the webhook's POST to the record saying so (applied, or refused
with the problem), and the loop's RSS after it and its peak (VmHWM) so far. Ratios are against
the baseline of the same run.

    python3 benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import git
from reconcile_at_scale import Loop, load_average, wait  # this folder, as the script runs from it

from reconciler import kube
from reconciler.engine import record
from reconciler.localcluster import build, plane
from reconciler.localcluster.config import default_nodes

EXTENSION = "azureml-extension"
ROOT = Path(__file__).resolve().parent.parent


def bomb() -> str:
    rows = ["l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    rows += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "kind: Laughs\n" + "\n".join(rows) + "\n"


def deep_flow() -> str:
    return "a: " + "[" * 60_000 + "]" * 60_000 + "\n"


def deep_block() -> str:
    return "".join(" " * i + f"k{i}:\n" for i in range(2_000)) + " " * 2_000 + "x: 1\n"


def peak_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(s for s in status.splitlines() if s.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


class Repo:
    def __init__(self, root: Path) -> None:
        shutil.copytree(ROOT / "manifests", root)
        self.root = root
        self.git = git.Repo.init(root, initial_branch="main")
        self.commit("the bundled example")

    def commit(self, message: str) -> str:
        self.git.git.add(A=True)
        return self.git.index.commit(message).hexsha


def status(cluster: kube.Cluster) -> dict[str, object]:
    try:
        live = kube.get(cluster, record.ref(EXTENSION))
    except kube.KubeError:  # before the loop's first apply installs the record's CRD
        return {}
    return dict(live.get("status") or {}) if live else {}


def main() -> None:
    build.ensure_built(lambda line: print(f"[build] {line}", file=sys.stderr))
    folder = Path(tempfile.mkdtemp(prefix="hostile-"))
    with plane.running(default_nodes(), folder / "plane") as state:
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            plane.kill(component, Path(state.state_dir))
        cluster = kube.connect(state.kubeconfig)
        repo = Repo(folder / "repo")
        first = repo.git.head.commit.hexsha
        loop = Loop(repo.root, state.kubeconfig, folder)
        try:
            wait(lambda: status(cluster).get("lastAppliedRevision") == first, "first apply", 300)
            rows: list[tuple[str, float, float, float]] = []

            def measure(what: str, change: object, done: object) -> None:
                change()  # type: ignore[operator]
                sha = repo.commit(what)
                start = time.monotonic()
                loop.hook()
                wait(lambda: done(status(cluster), sha), what, 300)  # type: ignore[operator]
                seconds = time.monotonic() - start
                assert loop.process.poll() is None, "the loop died"
                rows.append((what, seconds, loop.rss_mib(), peak_mib(loop.process.pid)))

            def applied(found: dict[str, object], sha: str) -> bool:
                return found.get("lastAppliedRevision") == sha

            def refused(words: str) -> object:
                def check(found: dict[str, object], sha: str) -> bool:
                    problems = " ".join(str(p) for p in found.get("problems") or [])  # type: ignore[attr-defined]
                    return found.get("lastAttemptedRevision") == sha and words in problems

                return check

            types = repo.root / "infra/instancetypes.yaml"
            bad = repo.root / "infra/hostile.yaml"
            measure(
                "a valid change",
                lambda: types.write_text(types.read_text().replace("cpu: 500m", "cpu: 400m", 1)),
                applied,
            )
            measure("an alias bomb", lambda: bad.write_text(bomb()), refused("alias bomb"))
            measure("60,000 nested [", lambda: bad.write_text(deep_flow()), refused("nested"))
            measure(
                "2,000 indented levels", lambda: bad.write_text(deep_block()), refused("nested")
            )
            measure("the fix", bad.unlink, applied)
        finally:
            loop.stop()
    shutil.rmtree(folder, ignore_errors=True)

    baseline = rows[0][1]
    print(f"\nload average: {load_average()}")
    print(f"{'commit':<24} {'seconds':>8} {'x baseline':>10} {'RSS MiB':>8} {'peak MiB':>9}")
    for what, seconds, rss, peak in rows:
        print(f"{what:<24} {seconds:>8.2f} {seconds / baseline:>10.2f} {rss:>8.1f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
