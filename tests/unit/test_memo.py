"""Reuse between revisions (`memo`): an incremental diff is exactly the full one.

Each scenario commits a base repo to a real temporary git repository, makes one kind of change
(a job edit, an extension setting every object depends on, an instance type, a rename, a deleted
file, a rotated certificate, moved protected PEM files, CRLF line ends, a broken head, ...) and
commits it. Then loading and rendering the two commits (in the order `between` does) and the
work tree through one shared `memo.Memo` must give exactly what loading and rendering each
revision alone gives (problems with their file names, models with their manifests, objects
compared by `repr` so types and key order count); most scenarios also pin how little the second
revision recomputes. `revisiondiff.between` prints the same in every format with and without
reuse.
Further down: reused objects are never aliased, and `fingerprint` / `text_id` properties.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import git
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import gitsnapshot, objects, source
from reconciler.engine import fingerprint, revisiondiff
from reconciler.model import extensions, memo, repo, workloads
from reconciler.printers import revisiondiff as printed
from reconciler.render import render
from tests.helpers import commit_all, extension, self_signed_pem, write_repo

REPO_ROOT = Path(__file__).resolve().parents[2]

HTTPS = extension(
    """
    enableTraining: True
    enableInference: True
    inferenceRouterServiceType: LoadBalancer
    allowInsecureConnections: False
    sslCname: ml.example.com
    """,
    protected="""
    sslCertPemFile: certs/cert.pem
    sslKeyPemFile: certs/key.pem
    """,
)
HTTPS_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
name: scorer
model: {path: https://models.example.com/m.pkl}
environment: {image: python:3.11-slim}
"""


def example(folder: Path) -> None:
    shutil.copytree(REPO_ROOT / "manifests", folder)


def broken_example(folder: Path) -> None:
    """The example with a schema error that no change fixes: its problems are reused."""
    example(folder)
    replace(folder, "infra/extension.yaml", "clusterType:", "clusterTipe:")
    (folder / "notes.yaml").write_text("just: notes\n")


def https(folder: Path) -> None:
    cert, key = self_signed_pem()
    files: dict[str, str | bytes] = {"extension.yaml": HTTPS, "certs/cert.pem": cert,
                                     "certs/key.pem": key,
                                     "deployments/scorer.yaml": HTTPS_DEPLOYMENT}  # fmt: skip
    write_repo(folder, files)


def replace(folder: Path, path: str, old: str, new: str) -> None:
    target = folder / path
    text = target.read_text()
    assert old in text, (path, old)
    target.write_text(text.replace(old, new))


def rename(folder: Path, old: str, new: str) -> None:
    (folder / old).rename(folder / new)


def delete_green(folder: Path) -> None:
    """The green deployment goes, and its endpoint's traffic with it."""
    (folder / "deployments" / "green.yaml").unlink()
    replace(folder, "deployments/endpoint.yaml", "blue: 90\n  green: 10", "blue: 100")


def rotate_certificate(folder: Path) -> None:
    cert, key = self_signed_pem()
    write_repo(folder, {"certs/cert.pem": cert, "certs/key.pem": key})


def move_pem_files(folder: Path) -> None:
    """A protected-settings change with the same key material: the paths move."""
    rename(folder, "certs", "tls")
    replace(folder, "extension.yaml", "certs/", "tls/")


def crlf(folder: Path) -> None:
    target = folder / "jobs" / "train.yaml"
    target.write_bytes(
        target.read_bytes().replace(b"\n", b"\r\n").replace(b"epochs 3", b"epochs 5")
    )


def invalid_utf8(folder: Path) -> None:
    target = folder / "jobs" / "train.yaml"
    target.write_bytes(target.read_bytes().replace(b"--epochs 3", b"--epochs \xff\xfe"))


Edit = Callable[[Path], None]
# name: (base repo, the change, what is computed twice as `between` goes: the base's files the
# head did not have and their parses (a renamed file's text was parsed already), then the head's
# render units the base did not have; None: not pinned).
SCENARIOS: dict[str, tuple[Edit, Edit, int | None]] = {
    "job command": (
        example,
        lambda f: replace(f, "jobs/train.yaml", "--epochs 3", "--epochs 4"),
        3,  # the job file and its parse, the job's objects
    ),
    "job code file": (
        example,
        lambda f: replace(f, "jobs/src/train.py", "import", "# changed\nimport"),
        1,  # the job's objects (its ConfigMap): no manifest changed
    ),
    "extension setting every object depends on": (
        example,
        lambda f: replace(f, "infra/extension.yaml", "    inferenceRouterHA: false",
                          "    inferenceRouterHA: false\n    nodeSelector:\n      pool: ml"),
        None,
    ),
    "release namespace": (
        example,
        lambda f: replace(f, "infra/extension.yaml", "releaseNamespace: azureml",
                          "releaseNamespace: ml"),
        7,  # its file and parse, the extension's objects, 2 jobs, 2 deployments (not the CRDs)
    ),
    "volcano off": (
        example,
        lambda f: replace(f, "infra/extension.yaml", "    inferenceRouterHA: false",
                          "    inferenceRouterHA: false\n    installVolcano: false"),
        None,
    ),
    "instance type used by one job": (
        example,
        lambda f: replace(f, "infra/gpu-instancetype.yaml", 'cpu: "2"', 'cpu: "3"'),
        4,  # its file and parse, the job using it, its custom resource
    ),
    "instance type in a list": (
        example,
        lambda f: replace(f, "infra/instancetypes.yaml", "memory: 2Gi", "memory: 3Gi"),
        5,  # the list file and parse, the job and the deployment using it, its custom resource
    ),
    "file renamed": (example, lambda f: rename(f, "jobs/train.yaml", "jobs/training.yaml"), 1),
    "nameless job renamed": (example, lambda f: rename(f, "jobs/hello.yml", "jobs/greet.yml"), 2),
    "deployment deleted": (
        example,
        lambda f: delete_green(f),
        5,  # its file, the endpoint's file, their parses, the extension's objects (router config)
    ),
    "model file": (
        example,
        lambda f: replace(f, "deployments/model/model.json", "0.5", "0.75"),
        2,  # both deployments' objects (ConfigMaps)
    ),
    "conda data file": (
        example,
        lambda f: replace(f, "deployments/model/conda.yml", "python=3.11", "python=3.12"),
        3,  # the conda file (data, not a manifest) and its parse, blue's objects, which mount it
    ),
    "crlf line ends": (example, crlf, None),
    "invalid head": (
        example,
        lambda f: replace(f, "infra/extension.yaml", "clusterType:", "clusterTipe:"),
        None,
    ),
    "undecodable bytes": (example, invalid_utf8, None),
    "invalid at both": (
        broken_example,
        lambda f: replace(f, "jobs/train.yaml", "--epochs 3", "--epochs 4"),
        2,  # the job file and its parse (nothing renders)
    ),
    "tls certificate rotated": (https, rotate_certificate, 1),  # the extension's objects
    "protected settings moved": (https, move_pem_files, None),
    "router settings": (
        https,
        lambda f: replace(f, "deployments/scorer.yaml", "name: scorer",
                          "name: scorer\nscale_settings: {type: target_utilization}"),
        4,  # its file and parse, its objects, the extension's (its router entry changed)
    ),
}  # fmt: skip


def loaded_view(loaded: repo.Loaded) -> tuple[Any, ...]:
    """Everything a load gives, in a form where any difference shows: problems with their files,
    each model with where its manifest is."""
    models: list[tuple[str, str, str, str]] = []
    found: list[extensions.Extension | workloads.Workload] = [
        *loaded.repo.extensions.values(), *loaded.repo.jobs.values(),
        *loaded.repo.deployments.values()]  # fmt: skip
    for model in found:
        manifest = model.manifest
        assert manifest is not None
        models.append((repr(model), manifest.where, manifest.path, repr(manifest.fields)))
    for instance_type in loaded.repo.instance_types.values():
        where = instance_type.document.file if instance_type.document else ""
        models.append((repr(instance_type), where, instance_type.source_path, ""))
    return tuple(loaded.problems), tuple(models)


def rendered_view(
    loaded: repo.Loaded, snapshot: source.Snapshot, reuse: memo.Memo | None
) -> str | None:
    """The objects' `repr` (so types and key order count), each revision stamped with its own
    name; None for an invalid repo (never rendered)."""
    if not loaded.valid:
        return None
    revision = snapshot.display("")  # differs between snapshots, as revisions do
    return repr(render.render_repo(loaded.repo, snapshot, revision, reuse))


def outcome(snapshot: source.Snapshot, reuse: memo.Memo | None) -> tuple[Any, ...]:
    loaded = repo.load(snapshot, reuse)
    return loaded_view(loaded), rendered_view(loaded, snapshot, reuse)


def committed(tmp_path: Path, base: Edit, change: Edit) -> tuple[Path, git.Repo]:
    folder = tmp_path / "repo"
    base(folder)
    commit_all(tmp_path, "base")
    change(folder)
    return folder, commit_all(tmp_path, "change")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_reuse_gives_what_a_full_load_and_render_give(tmp_path: Path, scenario: str) -> None:
    base, change, recomputed = SCENARIOS[scenario]
    folder, _ = committed(tmp_path, base, change)
    old = gitsnapshot.GitSnapshot.at(folder, "HEAD~1")
    new = gitsnapshot.GitSnapshot.at(folder, "HEAD")
    shared = memo.Memo()
    # As `between` goes: the head loaded, the base loaded reusing its files (relabelled from
    # `HEAD:repo/...` to `HEAD~1:repo/...`), the base rendered, the head rendered reusing it.
    new_loaded = repo.load(new, shared)
    start = shared.misses
    old_loaded = repo.load(old, shared)
    misses = shared.misses - start  # files the head did not have
    old_rendered = rendered_view(old_loaded, old, shared)
    start = shared.misses
    new_rendered = rendered_view(new_loaded, new, shared)
    misses += shared.misses - start  # units the base did not have
    assert (loaded_view(new_loaded), new_rendered) == outcome(new, None)
    assert (loaded_view(old_loaded), old_rendered) == outcome(old, None)
    if recomputed is not None:  # what the base has that the head does not: files and units
        assert misses == recomputed
    # The work tree (as committed at HEAD) reusing the commits' work, files by blob id.
    tree = source.DirectorySnapshot(folder)
    hits = shared.hits
    assert outcome(tree, shared) == outcome(tree, None)
    assert shared.hits > hits


@pytest.mark.parametrize(
    "scenario", ["job command", "release namespace", "tls certificate rotated", "invalid head"]
)
def test_between_prints_the_same_with_and_without_reuse(tmp_path: Path, scenario: str) -> None:
    base, change, _ = SCENARIOS[scenario]
    folder, _ = committed(tmp_path, base, change)
    old = gitsnapshot.GitSnapshot.at(folder, "HEAD~1")
    for head in (gitsnapshot.GitSnapshot.at(folder, "HEAD"), source.DirectorySnapshot(folder)):
        incremental = revisiondiff.between(old, head)
        whole = revisiondiff.between(old, head, reuse=False)
        assert printed.as_json(incremental) == printed.as_json(whole)
        assert printed.text(incremental) == printed.text(whole)
        assert printed.markdown(incremental) == printed.markdown(whole)
        assert incremental.exit_code == whole.exit_code


def test_the_diff_of_a_job_edit_is_that_job_only(tmp_path: Path) -> None:
    base, change, _ = SCENARIOS["job command"]
    folder, _ = committed(tmp_path, base, change)
    result = revisiondiff.between(
        gitsnapshot.GitSnapshot.at(folder, "HEAD~1"), gitsnapshot.GitSnapshot.at(folder, "HEAD")
    )
    changed = [(s.action.value, s.key.name) for e in result.extensions for s in e.plan.steps
               if s.action.value != "unchanged"]  # fmt: skip
    assert changed == [("update", "train-mnist")]


def test_a_renamed_file_is_stamped_with_its_new_path(tmp_path: Path) -> None:
    """The job's objects are reused (their render key has no file in it) but carry the path
    and revision of the revision they are rendered for."""
    base, change, _ = SCENARIOS["file renamed"]
    folder, _ = committed(tmp_path, base, change)
    shared = memo.Memo()
    for ref, path in (("HEAD~1", "jobs/train.yaml"), ("HEAD", "jobs/training.yaml")):
        snapshot = gitsnapshot.GitSnapshot.at(folder, ref)
        loaded = repo.load(snapshot, shared)
        job = next(o for o in render.render_repo(loaded.repo, snapshot, ref, shared).objects
                   if o["metadata"]["name"] == "train-mnist" and o["kind"] == "Job")  # fmt: skip
        annotations = job["metadata"]["annotations"]
        assert annotations[objects.SOURCE_FILE_ANNOTATION] == path
        assert annotations[objects.SOURCE_REVISION_ANNOTATION] == ref


def _containers(value: Any) -> list[Any]:
    """Every dict and list inside `value`, itself included."""
    found: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            found.append(item)
            stack.extend(item)
    return found


def test_reused_objects_are_never_shared_between_revisions(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    https(folder)
    snapshot = source.DirectorySnapshot(folder)
    shared = memo.Memo()
    loaded = repo.load(snapshot, shared)
    loads = shared.misses
    first = render.render_repo(loaded.repo, snapshot, "one", shared).objects
    second = render.render_repo(loaded.repo, snapshot, "two", shared).objects
    assert shared.hits and shared.hits == shared.misses - loads  # the second reused every unit
    assert not {id(c) for c in _containers(first)} & {id(c) for c in _containers(second)}
    expected = repr(render.render_repo(loaded.repo, snapshot, "three").objects)
    for obj in first + second:  # whatever callers do to what they got, the memo is untouched
        obj["spec"] = {"changed": True}
        obj["metadata"].setdefault("labels", {})["x"] = "y"
    assert repr(render.render_repo(loaded.repo, snapshot, "three", shared).objects) == expected


def test_a_memo_kept_result_is_computed_once() -> None:
    shared = memo.Memo()
    calls: list[int] = []

    def compute() -> list[dict[str, Any]]:
        calls.append(1)
        return [{"a": [1, 2.0, True, None, "x", (1, 2)]}]

    got = [shared.copied("k", compute) for _ in range(3)]
    assert len(calls) == 1 and (shared.hits, shared.misses) == (2, 1)
    assert repr(got[0]) == repr(got[1]) == repr(got[2])
    assert got[0] is not got[1] and got[0][0]["a"] is not got[1][0]["a"]
    assert shared.get("g", lambda: (1,)) is shared.get("g", lambda: (2,))  # frozen: shared as is


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(JSON, JSON)
def test_equal_fingerprints_mean_identical_values(a: Any, b: Any) -> None:
    if memo.fingerprint(a) == memo.fingerprint(b):
        assert repr(a) == repr(b)
    assert memo.fingerprint(a) == memo.fingerprint(memo._thaw(memo._freeze(a)))


def test_fingerprints_tell_what_renders_differently() -> None:
    values = [1, 1.0, True, "1", 0.0, -0.0, [1], (1,), {"a": 1, "b": 2}, {"b": 2, "a": 1}]
    assert len({memo.fingerprint(v) for v in values}) == len(values)
    unknown = object()
    assert memo.fingerprint(unknown) != memo.fingerprint(unknown)  # never reused
    job = repo.load(source.DirectorySnapshot(REPO_ROOT / "manifests")).repo.jobs["train-mnist"]
    assert memo.fingerprint(job) == memo.fingerprint(job)
    assert "manifest" not in repr(memo.fingerprint(job))  # where it came from is no input


@given(st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"")))
def test_a_work_tree_file_without_carriage_returns_reads_as_its_bytes_decoded(
    data: bytes,
) -> None:
    """What lets a work-tree file share a commit's results (`memo.text_id`): a commit's text is
    its bytes decoded with replacement, and so is the work tree's when no `\\r` is in them."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "f.yaml").write_bytes(data)
        snapshot = source.DirectorySnapshot(folder)
        assert snapshot.read_text("f.yaml") == data.decode("utf-8", "replace")
        assert memo.text_id(snapshot, "f.yaml") == ("raw", memo.blob_id(data))


# Line ends of every kind, and bytes that are not UTF-8 alone (\xc3 starts a two-byte "é").
_PIECES = [b"\r", b"\n", b"\r\n", b"a", b"\xff", b"\xc3", b"\xa9"]


@given(
    st.lists(st.sampled_from(_PIECES), max_size=24).map(b"".join),
    st.sampled_from(["f.yaml", "code/score.py"]),
)
def test_a_work_tree_file_reads_as_in_text_mode(data: bytes, name: str) -> None:
    """A manifest's text comes from the bytes the snapshot keeps: it is what reading the file
    in text mode gives (universal newlines, replacement), as for the files it does not keep."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        snapshot = source.DirectorySnapshot(folder)
        assert snapshot.read_text(name) == path.read_text(encoding="utf-8", errors="replace")
        assert snapshot.read_bytes(name) == data


def test_a_work_tree_manifest_is_read_once_so_its_id_check_and_parse_see_the_same_bytes(
    tmp_path: Path,
) -> None:
    """Saved again while a command runs, a manifest is still the one the snapshot first read
    (its text id names what was parsed); a model or code file is read anew each time."""
    (tmp_path / "job.yaml").write_text("name: a\n")
    (tmp_path / "model.bin").write_bytes(b"1")
    snapshot = source.DirectorySnapshot(tmp_path)
    first = memo.text_id(snapshot, "job.yaml")
    assert snapshot.read_bytes("model.bin") == b"1"
    (tmp_path / "job.yaml").write_text("name: b\n")
    (tmp_path / "model.bin").write_bytes(b"2")
    assert memo.text_id(snapshot, "job.yaml") == first
    assert snapshot.read_text("job.yaml") == "name: a\n"
    assert snapshot.read_bytes("model.bin") == b"2"
    assert source.DirectorySnapshot(tmp_path).read_text("job.yaml") == "name: b\n"


class _CountingSnapshot(gitsnapshot.GitSnapshot):
    """A commit that notes every file read from it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[str] = []

    def read_bytes(self, path: str) -> bytes:
        self.reads.append(path)
        return super().read_bytes(path)


def test_a_load_through_a_memo_reads_only_the_files_that_changed(tmp_path: Path) -> None:
    """The GitOps loop's tick: a commit's unchanged files are known by their blob ids, so not
    one of them is read again (not even to ask whether it is SOPS-encrypted)."""
    base, change, _ = SCENARIOS["job command"]
    folder, repository = committed(tmp_path, base, change)
    shared = memo.Memo()
    for ref in ("HEAD~1", "HEAD"):
        snapshot = _CountingSnapshot(repository, repository.commit(ref), "repo", ref)
        loaded = repo.load(snapshot, shared)
        assert loaded_view(loaded) == loaded_view(
            repo.load(gitsnapshot.GitSnapshot.at(folder, ref))
        )
    assert set(snapshot.reads) == {"jobs/train.yaml"}


def test_a_load_through_a_memo_builds_again_only_the_workloads_whose_inputs_changed(
    tmp_path: Path,
) -> None:
    """The loop's tick: an unchanged file's workload is the model the last load built (so its
    fingerprint is not computed again), unless a file it checks changed: a job whose code
    folder goes is built again, and says so, as a load without a memo does."""
    folder = tmp_path / "repo"
    example(folder)
    shared = memo.Memo()

    def tick() -> repo.Loaded:
        loaded = repo.load(source.DirectorySnapshot(folder), shared)
        shared.forget_unused()
        assert loaded_view(loaded) == loaded_view(repo.load(source.DirectorySnapshot(folder)))
        return loaded

    first = tick()
    second = tick()
    assert second.valid and set(second.repo.jobs) == {"jobs-hello", "train-mnist"}
    assert all(second.repo.jobs[name] is first.repo.jobs[name] for name in second.repo.jobs)
    print_first = memo.fingerprint(second.repo.jobs["train-mnist"])

    moved = tmp_path / "src-elsewhere"
    (folder / "jobs" / "src").rename(moved)  # the manifest is unchanged, its code folder gone
    third = tick()
    assert third.repo.jobs["train-mnist"] is not second.repo.jobs["train-mnist"]
    assert third.repo.jobs["jobs-hello"] is second.repo.jobs["jobs-hello"]
    assert [p.message for p in third.errors if p.file.endswith("train.yaml")] == [
        f"no such file or folder: {folder / 'jobs' / 'src'}"
    ]

    moved.rename(folder / "jobs" / "src")
    fourth = tick()
    assert fourth.valid
    assert memo.fingerprint(fourth.repo.jobs["train-mnist"]) == print_first


def test_a_models_fingerprint_digest_is_computed_once_while_it_is_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = repo.load(source.DirectorySnapshot(REPO_ROOT / "manifests")).repo.jobs["jobs-hello"]
    shared = memo.Memo()
    digest = shared.fingerprint_digest(job)
    assert digest == memo.digest(memo.fingerprint(job))
    computed: list[object] = []
    original = memo.fingerprint

    def counted(value: object) -> Hashable:
        computed.append(value)
        return original(value)

    monkeypatch.setattr(memo, "fingerprint", counted)
    assert shared.fingerprint_digest(job) == digest
    shared.forget_unused()
    assert shared.fingerprint_digest(job) == digest  # asked for again since: kept
    assert computed == []
    shared.forget_unused()
    shared.forget_unused()
    assert shared.fingerprint_digest(job) == digest  # not asked for in between: forgotten
    assert computed[0] is job  # (and, as fingerprint recurses, its fields)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "invalid at both"])
def test_a_content_id_names_one_content_at_every_revision(tmp_path: Path, scenario: str) -> None:
    """Planning looks an object's fingerprint up by the id render gives it (its unit's key,
    its place, its owner): across revisions and the work tree, one id never names two
    contents (but for the source revision, which the fingerprint leaves out)."""
    base, change, _ = SCENARIOS[scenario]
    folder, _ = committed(tmp_path, base, change)
    shared = memo.Memo()
    named: dict[bytes, str] = {}
    for snapshot in (
        gitsnapshot.GitSnapshot.at(folder, "HEAD"),
        gitsnapshot.GitSnapshot.at(folder, "HEAD~1"),
        source.DirectorySnapshot(folder),
        source.DirectorySnapshot(folder),
    ):
        loaded = repo.load(snapshot, shared)
        if not loaded.valid:
            continue
        rendered = render.render_repo(loaded.repo, snapshot, snapshot.display(""), shared)
        valid = loaded.repo
        for obj in rendered.objects:
            content_id = rendered.content_id(obj)
            assert content_id is not None, objects.key(obj)
            content = repr(fingerprint._hashed(obj))
            assert named.setdefault(content_id, content) == content, objects.key(obj)
        shared.forget_unused()
    assert named
    alone = render.render_repo(valid, snapshot, "r")  # without a memo: no ids
    assert all(alone.content_id(obj) is None for obj in alone.objects)
    copied = dict(rendered.objects[0])  # a copy (a filled Secret, trimmed replicas): no id
    assert rendered.content_id(copied) is None
