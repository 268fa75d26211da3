"""`reconciler diff` of a generated ~1,000-object repo between two commits that change one job
file, reported against a full render (load + validate + render) of the same repo, in one run.

The repo is `render_repo`'s generator (one extension, two instance types, jobs and model
deployments) committed to a fresh git repository; a second commit edits one job's command.
Measured in turns, best of N wall time each, every snapshot opened inside the measurement:

- full render: load + render of the head commit once (the baseline);
- diff: `revisiondiff.between` of the two commits, reusing the base's unchanged files and
  render units from the head's (what `reconciler diff` does);
- diff without reuse: both revisions loaded and rendered in full;
- diff against the work tree: the head left out, as `reconciler diff --base REF` runs.

    python3 benchmarks/diff_repo.py [--workloads 610] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import git
import render_repo  # the generator, beside this file

from reconciler import gitsnapshot, source
from reconciler.engine import plans, revision, revisiondiff
from reconciler.engine import reuse as reusing
from reconciler.printers import revisiondiff as printed


def best_of(repeat: int, works: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The best wall time of each, measured in turns (one of each per round), so a busy moment
    on the machine does not fall on one measurement only."""
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeat):
        for name, work in works.items():
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    return {name: min(found) for name, found in times.items()}


def commit_all(repository: git.Repo, message: str) -> None:
    repository.git.add(A=True)
    repository.index.commit(message)


def make_repo(root: Path, workloads: int) -> None:
    """The generated repo in two commits: as generated, then one job's command changed."""
    render_repo.generate(root, workloads)
    repository = git.Repo.init(root)
    with repository.config_writer() as config:
        config.set_value("user", "name", "bench")
        config.set_value("user", "email", "bench@example.com")
    commit_all(repository, "generated")
    job = root / "jobs" / "j4.yaml"
    job.write_text(job.read_text().replace("--seed 4", "--seed 40"))
    commit_all(repository, "one job changed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=610)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_repo(root, args.workloads)

        def full_render() -> list[object]:
            head = revision.Revision(gitsnapshot.GitSnapshot.at(root, "HEAD"))
            assert head.valid, head.error_lines()[:5]
            return list(head.rendered.objects)

        def diff(reuse: bool, head_ref: str | None = "HEAD") -> revisiondiff.RevisionDiff:
            base = gitsnapshot.GitSnapshot.at(root, "HEAD~1")
            head: source.Snapshot = (
                gitsnapshot.GitSnapshot.at(root, head_ref)
                if head_ref
                else source.DirectorySnapshot(root)
            )
            return revisiondiff.between(base, head, reuse=reuse)

        count = len(full_render())
        incremental, whole = diff(True), diff(False)
        # The reuse must not change the answer: the same plan, exactly one job updated.
        assert printed.as_json(incremental) == printed.as_json(whole)
        steps = [s for e in incremental.extensions for s in e.plan.steps]
        changed = [(s.action, s.key.name) for s in steps if s.action is not plans.Action.UNCHANGED]
        assert changed == [(plans.Action.UPDATE, "job-4")], changed
        reuse = reuse_counts(root)

        best = best_of(
            args.repeat,
            {
                "full render (load + render, head only)": full_render,
                "diff HEAD~1..HEAD": lambda: diff(True),
                "diff HEAD~1..HEAD without reuse": lambda: diff(False),
                "diff HEAD~1..work tree": lambda: diff(True, None),
            },
        )
    print(f"repo: 1 extension, 2 instance types, {args.workloads} workloads -> {count} objects")
    print("change: one job file edited between the two commits (1 object updated)")
    print(f"reuse: {reuse}")
    print(f"best of {args.repeat} runs each, taken in turns")
    full_seconds = best["full render (load + render, head only)"]
    for label, seconds in best.items():
        ratio = seconds / full_seconds
        print(f"{label:40} {seconds * 1000:8.1f} ms   {ratio:5.2f} x full render")
    gain = best["diff HEAD~1..HEAD without reuse"] / best["diff HEAD~1..HEAD"]
    print(f"reuse gain: diff without reuse / diff = {gain:.2f}")


def reuse_counts(root: Path) -> str:
    """What the base revision took from the head's work, as `between` shares it."""
    handle = reusing.Reuse()
    shared = handle.memo
    assert revision.Revision(gitsnapshot.GitSnapshot.at(root, "HEAD"), handle).rendered.objects
    first = (shared.hits, shared.misses)
    assert revision.Revision(gitsnapshot.GitSnapshot.at(root, "HEAD~1"), handle).rendered.objects
    hits, misses = shared.hits - first[0], shared.misses - first[1]
    return (
        f"the second revision reused {hits} files and render units, recomputed {misses} "
        f"(the first computed {first[1]})"
    )


if __name__ == "__main__":
    main()
