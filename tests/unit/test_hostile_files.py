"""Hostile files in a manifests repo (issue 27, item 3): symlinks, FIFOs, devices, sizes, URIs.

A repo is read the same way in a work tree and in a commit: a symlink is followed only to a file
or folder inside the repo (in a commit, inside that commit's tree), a FIFO or device is never
opened for reading, a file past `source.MAX_FILE_BYTES` is never read whole, a loop ends, and a
`file://` URI (or any scheme the cluster cannot fetch) is an error naming FILE:LINE and field.
Each case is a problem of the revision, never a traceback or a hang; nothing of a host file
reaches what validate, render or diff print.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from reconciler import source
from reconciler.engine import plans, revisiondiff
from reconciler.gitsnapshot import GitSnapshot
from reconciler.model import memo, repo
from reconciler.render import render
from tests import helpers
from tests.helpers import (
    EXTENSION,
    commit_all,
    errors,
    extension,
    load,
    self_signed_pem,
    write_repo,
)

DEPLOYMENT = """
$schema: https://x/kubernetesOnlineDeployment.schema.json
name: blue
environment: {image: python:3.11}
code_configuration: {code: ./score, scoring_script: score.py}
model: {path: ./model}
"""
JOB = """
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
name: train
command: python train.py
code: ./src
environment: {image: python:3.11}
"""
HOST_FILE = Path("/etc/passwd")
# Enough of the host file to tell it apart from anything the repo or a message holds.
HOST_TEXT = HOST_FILE.read_text().splitlines()[0]
# A run that hangs (a FIFO opened for reading, /dev/zero read to the end) ends here, as a failure;
# one that reads /dev/zero into memory stops at this much (a MemoryError, not a swapping machine).
HANG = 60
MEMORY = 2 * 1024**3


def deployment_repo(root: Path) -> Path:
    return write_repo(
        root,
        {
            "ext.yaml": EXTENSION,
            "d.yaml": DEPLOYMENT,
            "score/score.py": "def run(x):\n    return x\n",
            "model/weights.bin": b"\x00weights",
        },
    )


def reconciler(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command bounded in time and memory: a hostile file must not make it hang or swell."""
    return helpers.reconciler(
        *args,
        cwd=cwd,
        timeout=HANG,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY)),
    )


# --- a work tree ---------------------------------------------------------------------------


def test_a_symlink_in_a_model_folder_to_a_host_file_is_an_error_and_nothing_of_it_is_shown(
    tmp_path: Path,
) -> None:
    root = deployment_repo(tmp_path / "repo")
    (root / "model" / "leak.txt").symlink_to(HOST_FILE)
    problem = (
        "repo/d.yaml:5: model.path: repo/model/leak.txt: the symlink model/leak.txt -> "
        "/etc/passwd leads outside the repo: only files inside it are read"
    )
    validated = reconciler("validate", "repo", cwd=tmp_path)
    assert (validated.returncode, validated.stdout) == (1, f"{problem}\n1 problem\n")
    rendered = reconciler("render", "repo", cwd=tmp_path)
    assert (rendered.returncode, rendered.stdout) == (1, "")
    assert rendered.stderr == f"{problem}\n1 problem\n"
    # The same through a symlinked code folder, and a symlink to a folder outside.
    (root / "score" / "etc").symlink_to("/etc")
    loaded = load(root)
    assert any(
        "repo/score/etc: the symlink score/etc -> /etc leads outside" in e for e in errors(loaded)
    )


def test_symlinks_to_files_and_folders_inside_the_repo_are_followed(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path / "repo",
        {
            "ext.yaml": EXTENSION,
            "d.yaml": DEPLOYMENT,
            "shared/score.py": "def run(x):\n    return 2 * x\n",
            "shared/weights/w.bin": "shared weights",
            "manifests/j.yaml": JOB.replace("./src", "./code"),
            "manifests/lib/train.py": "print('trained')\n",
        },
    )
    (root / "score").mkdir()
    (root / "score" / "score.py").symlink_to("../shared/score.py")
    (root / "model").symlink_to("shared/weights", target_is_directory=True)
    (root / "manifests" / "code").symlink_to("lib", target_is_directory=True)
    loaded = load(root)
    assert loaded.valid, errors(loaded)
    rendered = render.render_repo(loaded.repo, source.DirectorySnapshot(root), "rev").objects
    maps = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "ConfigMap"}
    assert maps["blue-code"]["data"] == {"score.py": "def run(x):\n    return 2 * x\n"}
    assert maps["blue-model"]["data"] == {"model__w.bin": "shared weights"}
    assert maps["train-code"]["data"] == {"train.py": "print('trained')\n"}


def test_a_yaml_symlink_to_dev_zero_is_one_error_not_a_memory_error(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {"ext.yaml": EXTENSION})
    (root / "zero.yaml").symlink_to("/dev/zero")
    done = reconciler("validate", "repo", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout == (
        "repo/zero.yaml: the symlink zero.yaml -> /dev/zero leads outside the repo: only files "
        "inside it are read\n1 problem\n"
    )


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path / "repo", {"ext.yaml": EXTENSION, "j.yaml": JOB, "src/train.py": "print(1)\n"}
    )
    os.mkfifo(root / "x.yaml")
    os.mkfifo(root / "src" / "pipe")
    done = reconciler("validate", "repo", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout.splitlines() == [
        "repo/j.yaml:4: code: repo/src/pipe: a FIFO: only regular files and folders are read",
        "repo/x.yaml: a FIFO: only regular files and folders are read",
        "2 problems",
    ]
    # Named as PATH, a FIFO is a file that is refused, not an empty folder.
    alone = reconciler("validate", "repo/x.yaml", cwd=tmp_path)
    assert (alone.returncode, alone.stdout.splitlines()[-1]) == (1, "1 problem")


def test_symlink_loops_end_in_an_error(tmp_path: Path) -> None:
    root = deployment_repo(tmp_path / "repo")
    (root / "a.yaml").symlink_to("b.yaml")
    (root / "b.yaml").symlink_to("a.yaml")
    (root / "model" / "again").symlink_to(".", target_is_directory=True)
    (root / "score" / "there").symlink_to("../model", target_is_directory=True)
    (root / "model" / "back").symlink_to("../score", target_is_directory=True)
    done = reconciler("validate", "repo", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "")
    lines = done.stdout.splitlines()
    assert lines[-1] == f"{len(lines) - 1} problems"
    assert "repo/a.yaml: more than 40 symlinks in a row at a.yaml: a symlink loop" in lines
    assert "repo/b.yaml: more than 40 symlinks in a row at b.yaml: a symlink loop" in lines
    assert (
        "repo/d.yaml:5: model.path: repo/model/again: the symlink model/again leads back to model, "
        "a folder on its own path: a symlink loop" in lines
    )
    assert (
        "repo/d.yaml:4: code_configuration.code: repo/score/there/back: the symlink "
        "model/back leads back to score, a folder on its own path: a symlink loop" in lines
    )


def test_a_manifest_past_the_size_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {"ext.yaml": EXTENSION})
    big = source.MAX_FILE_BYTES + 1
    (root / "big.yaml").write_bytes(b"#" * (big - 1) + b"\n")
    assert errors(load(root)) == [
        f"{root}/big.yaml: {big:,} bytes or more: larger than the {source.MAX_FILE_BYTES:,} "
        "bytes a file of the repo may be"
    ]


def test_a_sourceignore_that_is_refused_makes_the_revision_invalid(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {"ext.yaml": EXTENSION})
    os.mkfifo(root / ".sourceignore")
    assert errors(load(root)) == [
        f"{root}/.sourceignore: a FIFO: only regular files and folders are read"
    ]


def test_a_protected_pem_file_symlinked_out_of_the_repo_is_not_read(tmp_path: Path) -> None:
    cert, key = self_signed_pem()
    text = extension(
        "enableInference: true\ninferenceRouterServiceType: ClusterIP\nsslCname: ml.example.com",
        protected="sslCertPemFile: cert.pem\nsslKeyPemFile: key.pem",
    )
    root = write_repo(tmp_path / "repo", {"ext.yaml": text, "cert.pem": cert})
    (tmp_path / "host-key.pem").write_bytes(key)
    (root / "key.pem").symlink_to(tmp_path / "host-key.pem")
    assert errors(load(root)) == [
        f"{root}/ext.yaml:13: spec.configProtected.sslKeyPemFile: the file it names is not read: "
        "a symlink leading out of the repo, in a loop or to nothing, or no regular file (a FIFO, "
        "a socket, a device) (protected: the value is not shown)"
    ]


def test_editing_extensions_skips_a_fifo_instead_of_waiting_on_it(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {"ext.yaml": EXTENSION})
    os.mkfifo(root / "pipe.yaml")
    done = reconciler(
        "extension", "create", "second", "repo", "--no-commit",
        "--config", "enableTraining=true", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "name: second" in next((root / "extensions").glob("*.yaml")).read_text()


# --- URIs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "line", "field", "given"),
    [
        (DEPLOYMENT.replace("{path: ./model}", "{local_path: file:///etc/passwd}"), 5,
         "model.local_path", "file:///etc/passwd"),
        (DEPLOYMENT.replace("./score,", "file:///etc,"), 4, "code_configuration.code",
         "file:///etc"),
        (DEPLOYMENT.replace("{image: python:3.11}",
                            "{image: python:3.11, conda_file: 'file:///etc/passwd'}"), 3,
         "environment.conda_file", "file:///etc/passwd"),
        (JOB.replace("./src", "file:///etc") , 4, "code", "file:///etc"),
        (JOB + "inputs:\n  data: {type: uri_file, path: 'file:///etc/passwd'}\n", 7,
         "inputs.data.path", "file:///etc/passwd"),
    ],
)  # fmt: skip
def test_a_file_uri_is_an_error_naming_file_line_and_field(
    tmp_path: Path, manifest: str, line: int, field: str, given: str
) -> None:
    root = deployment_repo(tmp_path / "repo")
    write_repo(root, {"w.yaml": manifest, "src/train.py": ""})
    assert (
        f"{root}/w.yaml:{line}: {field}: {given}: a file:// URI names a file of the machine "
        "that reads the manifest, not of the repo: give a path relative to the manifest's "
        "folder (./PATH)" in errors(load(root))
    )


@pytest.mark.parametrize("uri", ["ftp://host/m.pkl", "azureml://datastores/d/paths/m.pkl",
                                 "gopher://host/m", "s3://bucket/m.pkl"])  # fmt: skip
def test_a_model_is_fetched_only_over_http(tmp_path: Path, uri: str) -> None:
    root = deployment_repo(tmp_path / "repo")
    write_repo(root, {"d.yaml": DEPLOYMENT.replace("{path: ./model}", f"{{path: '{uri}'}}")})
    assert errors(load(root)) == [
        f"{root}/d.yaml:5: model.path: {uri}: the cluster fetches a model only from an http:// "
        "or https:// URI (a public wasbs:// blob as its https URL): give that, a file or folder "
        "in the repo, or a registered model (azureml:NAME:VERSION)"
    ]


def test_file_prefix_and_https_models_are_accepted(tmp_path: Path) -> None:
    root = deployment_repo(tmp_path / "repo")
    model = "[{path: 'file:./model'}, https://m.example.com/m.pkl, 'wasbs://c@a.blob.core.windows.net/m.pkl']"
    write_repo(root, {"d.yaml": DEPLOYMENT.replace("model: {path: ./model}", f"models: {model}")})
    loaded = load(root)
    assert loaded.valid, errors(loaded)
    assert loaded.repo.deployments["blue"].models == (
        "model",
        "https://m.example.com/m.pkl",
        "https://a.blob.core.windows.net/c/m.pkl",
    )


def test_registered_models_are_fetched_only_from_an_http_prefix(tmp_path: Path) -> None:
    root = deployment_repo(tmp_path / "repo")
    write_repo(
        root,
        {
            "ext.yaml": EXTENSION + "    registeredModelUri: file:///var/models\n",
            "d.yaml": DEPLOYMENT.replace("{path: ./model}", "azureml:mnist:1"),
        },
    )
    assert errors(load(root)) == [
        f"{root}/d.yaml:5: model: registered models are fetched from the setting "
        "registeredModelUri of extension 'azureml-extension', file:///var/models, which is no "
        "http:// or https:// URI (the cluster fetches a model with curl)"
    ]


# --- a commit ------------------------------------------------------------------------------


def test_a_commit_follows_symlinks_in_its_own_tree_and_refuses_the_rest(tmp_path: Path) -> None:
    root = deployment_repo(tmp_path / "repo")
    (root / "shared").mkdir()
    (root / "shared" / "w.bin").write_text("committed weights")
    (root / "model" / "inside.bin").symlink_to("../shared/w.bin")
    good = commit_all(root).head.commit.hexsha
    (root / "model" / "leak.txt").symlink_to(HOST_FILE)
    (root / "zero.yaml").symlink_to("/dev/zero")
    (root / "a.yaml").symlink_to("b.yaml")
    (root / "b.yaml").symlink_to("a.yaml")
    (root / "score" / "again").symlink_to("..", target_is_directory=True)
    # In the work tree only: the commit's symlink to it leads to nothing in the commit.
    (root / "model" / "later.bin").symlink_to("../untracked.bin")
    commit_all(root, "hostile")
    (root / "untracked.bin").write_text("not committed")

    committed = GitSnapshot.at(root, "HEAD")
    assert committed.read_bytes("model/inside.bin") == b"committed weights"
    loaded = repo.load(committed)
    assert errors(loaded) == [
        "HEAD:a.yaml: more than 40 symlinks in a row at a.yaml: a symlink loop",
        "HEAD:b.yaml: more than 40 symlinks in a row at b.yaml: a symlink loop",
        "HEAD:d.yaml:4: code_configuration.code: HEAD:score/again: the symlink score/again "
        "leads back to the root, a folder on its own path: a symlink loop",
        "HEAD:d.yaml:5: model.path: HEAD:model/later.bin: the symlink model/later.bin -> "
        "../untracked.bin leads to nothing",
        "HEAD:d.yaml:5: model.path: HEAD:model/leak.txt: the symlink model/leak.txt -> "
        "/etc/passwd leads outside the repo: only files inside it are read",
        "HEAD:zero.yaml: the symlink zero.yaml -> /dev/zero leads outside the repo: only files "
        "inside it are read",
    ]
    # The loop's path (a memo kept between ticks) finds the same, twice.
    kept = memo.Memo()
    for _ in range(2):
        assert errors(repo.load(GitSnapshot.at(root, "HEAD"), kept)) == errors(loaded)

    # A PR comment of the change: the head is invalid, nothing of the host file is in it.
    diff = reconciler("diff", "repo", "--base", good, "--head", "HEAD", cwd=tmp_path)
    assert diff.returncode == 2, diff.stderr
    assert "model/leak.txt -> /etc/passwd leads outside the repo" in diff.stdout
    assert HOST_TEXT not in diff.stdout + diff.stderr
    assert "Traceback" not in diff.stderr

    # The good commit renders the symlinked file's content, not its target's name.
    base = GitSnapshot.at(root, good)
    base_loaded = repo.load(base)
    assert base_loaded.valid, errors(base_loaded)
    rendered = render.render_repo(base_loaded.repo, base, good).objects
    (model,) = [o for o in rendered if o["metadata"]["name"] == "blue-model"]
    assert model["data"]["model__inside.bin"] == "committed weights"


def test_a_commit_that_changes_only_a_symlinks_target_changes_the_render(tmp_path: Path) -> None:
    root = deployment_repo(tmp_path / "repo")
    (root / "model" / "weights.bin").unlink()
    (root / "shared").mkdir()
    (root / "shared" / "w.bin").write_text("v1")
    (root / "model" / "weights.bin").symlink_to("../shared/w.bin")
    commit_all(root)
    (root / "shared" / "w.bin").write_text("v2")
    commit_all(root, "new weights behind the same symlink")
    diff = revisiondiff.between(GitSnapshot.at(root, "HEAD~1"), GitSnapshot.at(root, "HEAD"))
    updated = [s.key.name for e in diff.extensions for s in e.plan.of(plans.Action.UPDATE)]
    assert "blue-model" in updated


# --- the resolution itself -----------------------------------------------------------------


class _Tree:
    """A tree held in memory: folders (ending in /), files, and symlinks ("-> target")."""

    def __init__(self, *entries: str) -> None:
        self.entries: dict[str, source.Entry] = {"": source.Entry(source.Kind.FOLDER)}
        for given in entries:
            path, _, target = given.partition(" -> ")
            if target:
                self.entries[path] = source.Entry(source.Kind.LINK, target)
            elif path.endswith("/"):
                self.entries[path.rstrip("/")] = source.Entry(source.Kind.FOLDER)
            else:
                self.entries[path] = source.Entry(source.Kind.FILE)

    def entry(self, path: str) -> source.Entry:
        return self.entries.get(path, source.ABSENT)

    def names(self, folder: str) -> list[str]:
        return [p.rpartition("/")[2] for p in self.entries if p and p.rpartition("/")[0] == folder]


def test_a_fan_out_of_folder_symlinks_stops_at_the_walk_limit() -> None:
    # Each level links twice to the next: 2**30 paths to the one file at the bottom.
    levels = [f"d{i}/" for i in range(31)]
    links = [f"d{i}/{side} -> ../d{i + 1}" for i in range(30) for side in "ab"]
    tree = _Tree(*levels, *links, "d30/f")
    walked = source.walk(tree, "d0", limit=1000)
    assert walked.cut and len(walked.files) < 1000
    assert walked.refused == [("d0", "more than 1,000 files and folders below it")]
    # A path through it still leads where it leads.
    assert source.resolve(tree, "d28/a/b/f") == source.Resolved(source.Kind.FILE, "d30/f")


def test_dot_dot_in_a_target_is_resolved_from_where_the_symlink_leads() -> None:
    tree = _Tree("a/", "a/b/", "a/b/f", "c -> a/b", "up -> c/..", "out -> c/../../..")
    assert source.resolve(tree, "up") == source.Resolved(source.Kind.FOLDER, "a")
    assert source.resolve(tree, "out").refusal == (
        "the symlink out -> c/../../.. leads outside the repo: only files inside it are read"
    )
    assert source.resolve(tree, "../etc/passwd").refusal is not None
