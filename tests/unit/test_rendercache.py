"""The render units `plan` and `apply` keep on disk (`cli/rendercache.py`): reused only for the
same code, never changing what is rendered, and holding no secret value."""

from __future__ import annotations

import marshal
import os
import shutil
import time
from pathlib import Path

import pytest

from reconciler import objects, source
from reconciler.cli import rendercache
from reconciler.engine import fingerprint
from reconciler.model import decryption, documents, memo, repo, sops
from reconciler.render import render
from tests.helpers import extension, self_signed_pem, write_repo
from tests.sopsfixtures import age_key, encrypt

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests"
HTTPS = "enableInference: true\ninferenceRouterServiceType: NodePort\nsslCname: ml.example.com\n"
TLS_FILES = "sslCertPemFile: certs/cert.pem\nsslKeyPemFile: certs/key.pem"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(rendercache.ENVIRONMENT, str(folder))
    return folder


def _render_through_cache(
    root: Path, snapshot: source.Snapshot | None = None
) -> tuple[list[objects.Object], memo.Memo]:
    snapshot = snapshot or source.DirectorySnapshot(root)
    loaded = repo.load(snapshot)
    assert loaded.valid, [str(p) for p in loaded.problems]
    with rendercache.reusing(str(root), snapshot) as reuse:
        revision = snapshot.revision()
        rendered = render.render_repo(loaded.repo, snapshot, revision, reuse.memo).objects
    return rendered, reuse.memo


def _fresh(root: Path) -> list[objects.Object]:
    snapshot = source.DirectorySnapshot(root)
    return render.render_repo(repo.load(snapshot).repo, snapshot, snapshot.revision()).objects


def _kept_units(cache_dir: Path) -> list[object]:
    (path,) = cache_dir.glob("render-*.marshal")
    kept = marshal.loads(path.read_bytes())
    return [marshal.loads(data) for data in kept["units"].values()]


def test_the_next_command_reuses_every_unit_and_renders_the_same(tmp_path: Path) -> None:
    root = Path(shutil.copytree(EXAMPLE, tmp_path / "repo"))
    first, used = _render_through_cache(root)
    assert used.hits == 0 and used.misses > 0
    second, reused = _render_through_cache(root)
    assert reused.misses == 0 and reused.hits == used.misses
    assert second == first == _fresh(root)


def test_a_changed_file_renders_its_units_again(tmp_path: Path) -> None:
    root = Path(shutil.copytree(EXAMPLE, tmp_path / "repo"))
    _render_through_cache(root)
    changed = next((root / "deployments").glob("*.yaml"))
    changed.write_text(changed.read_text().replace("min_instances: 1", "min_instances: 2"))
    rendered, used = _render_through_cache(root)
    assert used.misses >= 1 and used.hits > 0
    assert rendered == _fresh(root)


def test_units_another_code_rendered_are_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(shutil.copytree(EXAMPLE, tmp_path / "repo"))
    _render_through_cache(root)
    monkeypatch.setattr(rendercache, "code_id", lambda: "another release")
    _, used = _render_through_cache(root)
    assert used.hits == 0


def test_no_secret_leaves_the_process(tmp_path: Path, cache_dir: Path) -> None:
    """A unit that renders a Secret (the router's TLS Secret from the repo's PEM files) is
    rendered every time, never written; the other units are."""
    cert, pem = self_signed_pem()
    files = {"extension.yaml": extension(HTTPS, protected=TLS_FILES), "certs/cert.pem": cert}
    root = write_repo(tmp_path / "repo", {**files, "certs/key.pem": pem})
    rendered, _ = _render_through_cache(root)
    assert any(o["kind"] == "Secret" for o in rendered)
    units = _kept_units(cache_dir)
    assert units and not any(memo._holds_secret(unit) for unit in units)
    body = pem.decode().splitlines()[1].encode()
    assert body not in (next(cache_dir.glob("render-*.marshal"))).read_bytes()


def test_nothing_is_written_for_a_repo_that_was_decrypted(tmp_path: Path, cache_dir: Path) -> None:
    key = age_key()
    cert, pem = self_signed_pem()
    files = {"extension.yaml": extension(HTTPS, protected=TLS_FILES), "certs/cert.pem": cert}
    root = write_repo(tmp_path / "repo", {**files, "certs/key.pem": pem})
    encrypt(root / "certs/key.pem", key)
    identities = sops.parse_identities(key.identity)
    snapshot = decryption.DecryptingSnapshot(source.DirectorySnapshot(root), identities)
    _render_through_cache(root, snapshot)
    assert snapshot.decrypted() == ["certs/key.pem"]
    assert not list(cache_dir.glob("render-*"))


def test_the_cache_can_be_switched_off_and_a_bad_file_is_ignored(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(shutil.copytree(EXAMPLE, tmp_path / "repo"))
    _render_through_cache(root)
    (path,) = cache_dir.glob("render-*.marshal")
    path.write_bytes(b"not marshal data")
    rendered, used = _render_through_cache(root)
    assert used.hits == 0 and rendered == _fresh(root)

    monkeypatch.setenv(rendercache.ENVIRONMENT, "")
    assert rendercache.directory() is None
    shutil.rmtree(cache_dir)
    _render_through_cache(root)
    assert not cache_dir.exists()


def test_the_files_of_repos_unused_for_a_month_are_removed(tmp_path: Path, cache_dir: Path) -> None:
    root = Path(shutil.copytree(EXAMPLE, tmp_path / "repo"))
    cache_dir.mkdir()
    old, recent = cache_dir / "render-old.marshal", cache_dir / "render-recent.marshal"
    for path, age in ((old, rendercache.UNUSED_FOR + 60), (recent, 60.0)):
        path.write_bytes(b"")
        os.utime(path, (time.time() - age, time.time() - age))
    _render_through_cache(root)
    assert not old.exists() and recent.exists()
    assert len(list(cache_dir.glob("render-*.marshal"))) == 2


def test_a_file_only_read_counts_as_used(tmp_path: Path, cache_dir: Path) -> None:
    """A repo applied every day without a change rewrites nothing, but its file is marked as
    used, so that another repo's command does not remove it as unused."""
    root = Path(shutil.copytree(EXAMPLE, tmp_path / "repo"))
    _render_through_cache(root)
    (path,) = cache_dir.glob("render-*.marshal")
    long_ago = time.time() - rendercache.UNUSED_FOR - 60
    os.utime(path, (long_ago, long_ago))
    _, used = _render_through_cache(root)
    assert used.misses == 0
    assert path.stat().st_mtime > time.time() - 60


def _owning_everything(stamped: objects.Object, manager: str) -> objects.Object:
    """`stamped` as the server returns it after `manager` applied it: one managedFields
    entry owning every field sent."""
    fields: dict[str, dict] = {}
    for path in fingerprint.sent_paths(stamped):
        node = fields
        for name in path:
            node = node.setdefault(f"f:{name}", {})
    entry = {"manager": manager, "operation": "Apply", "fieldsV1": fields}
    return {**stamped, "metadata": {**stamped["metadata"], "managedFields": [entry]}}


def test_fingerprint_answers_are_kept_for_the_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What planning computed (an object's fingerprint, whether our managedFields entry owns
    every field sent) is kept with the units; the next command learns it instead of walking
    the object again, and does not rewrite the file when it computed nothing new."""
    root = Path(shutil.copytree(EXAMPLE, tmp_path / "repo"))
    snapshot = source.DirectorySnapshot(root)
    loaded = repo.load(snapshot)
    with rendercache.reusing(str(root), snapshot) as reuse:
        revision = snapshot.revision()
        rendered = render.render_repo(loaded.repo, snapshot, revision, reuse.memo).objects
        deployment = next(o for o in rendered if o["kind"] == "Deployment")
        stamped = fingerprint.stamp(deployment)
        live = _owning_everything(stamped, "us")
        assert fingerprint.in_sync(stamped, live, "us")

    # The next command: a new process holds no answer, and must not compute one.
    monkeypatch.setattr(fingerprint, "_FINGERPRINTS", fingerprint._Known())
    monkeypatch.setattr(fingerprint, "_COVERED", fingerprint._Known())
    monkeypatch.setattr(fingerprint, "_of_clean", lambda _: pytest.fail("fingerprint computed"))
    monkeypatch.setattr(fingerprint, "_owns_all", lambda *_: pytest.fail("fields walked"))
    (path,) = Path(os.environ[rendercache.ENVIRONMENT]).glob("render-*.marshal")
    written = path.read_bytes()
    with rendercache.reusing(str(root), snapshot) as reuse:
        render.render_repo(loaded.repo, snapshot, snapshot.revision(), reuse.memo)
        assert fingerprint.stamp(deployment) == stamped
        assert fingerprint.in_sync(stamped, live, "us")
    assert fingerprint.computed() == 0 and path.read_bytes() == written


def test_the_next_command_parses_no_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file's parse is kept too (by its text): the next load of the same repo through the
    cache parses nothing, and loads exactly what a fresh load does; an edited file is parsed."""
    root = Path(shutil.copytree(EXAMPLE, tmp_path / "repo"))
    snapshot = source.DirectorySnapshot(root)
    with rendercache.reusing(str(root), snapshot) as reuse:
        first = repo.load(snapshot, reuse.memo)
    parse = documents.parse
    monkeypatch.setattr(documents, "parse", lambda *_: pytest.fail("parsed again"))
    with rendercache.reusing(str(root), snapshot) as reuse:
        again = repo.load(snapshot, reuse.memo)
    assert again.problems == first.problems
    assert repr(again.repo.deployments) == repr(first.repo.deployments)
    assert repr(again.repo.jobs) == repr(first.repo.jobs)
    changed = root / "jobs" / "train.yaml"
    changed.write_text(changed.read_text().replace("--epochs 3", "--epochs 4"))
    parsed: list[str] = []
    monkeypatch.setattr(documents, "parse", lambda f, t: parsed.append(f) or parse(f, t))
    snapshot = source.DirectorySnapshot(root)  # the next command's (a snapshot keeps what it read)
    with rendercache.reusing(str(root), snapshot) as reuse:
        repo.load(snapshot, reuse.memo)
    assert [Path(f).name for f in parsed] == ["train.yaml"]
