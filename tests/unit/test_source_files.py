"""Which YAML files of a repo are read for manifests (as Flux's source-controller
reads a repo): not what the root's `.sourceignore` excludes, not what git ignores in a work tree,
not hidden files and folders, virtual environments or `node_modules`; a commit's snapshot reads
the same files as its work tree.
"""

from pathlib import Path

from reconciler import source
from reconciler.gitsnapshot import GitSnapshot
from tests.helpers import (
    BROKEN,
    GITHUB_WORKFLOW,
    commit_all,
    extension,
    load,
    reconciler,
    write_repo,
)

EXTENSION = extension("enableTraining: true")
JOB = """
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
name: train
command: echo hi
environment: {image: python:3.11}
"""


def test_sourceignore_excludes_paths(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        ".sourceignore": "# as Flux reads it\ndrafts/\n*.wip.yaml\n!keep.wip.yaml\n/top.yml\n",
        "extension.yaml": EXTENSION,
        "drafts/broken.yaml": BROKEN,
        "jobs/drafts/broken.yaml": BROKEN,  # `drafts/` matches at any depth
        "jobs/x.wip.yaml": BROKEN,
        "jobs/keep.wip.yaml": JOB,
        "top.yml": BROKEN,  # anchored at the root
        "jobs/top.yml": JOB.replace("name: train", "name: top"),
    }
    root = write_repo(tmp_path / "repo", files)
    snapshot = source.DirectorySnapshot(root)
    kept = ["extension.yaml", "jobs/keep.wip.yaml", "jobs/top.yml"]
    assert list(snapshot.yaml_files()) == kept
    loaded = load(root)
    assert loaded.problems == [] and sorted(loaded.repo.jobs) == ["top", "train"]
    # A commit's snapshot reads the same files.
    work_tree = commit_all(root)
    assert list(GitSnapshot.at(root, "HEAD").yaml_files()) == kept
    assert work_tree.head.commit.tree / "drafts/broken.yaml"  # committed, yet not read


def test_hidden_folders_virtualenvs_and_node_modules_are_not_read(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path / "project",
        {
            "extension.yaml": EXTENSION,
            ".github/workflows/ci.yml": GITHUB_WORKFLOW,
            ".venv/lib/python3.11/site-packages/pkg/data.yaml": BROKEN,
            ".cache/models/x.yaml": BROKEN,
            ".sops.yaml": "creation_rules:\n  - age: age1xyz\n",
            "venv/pyvenv.cfg": "home = /usr/bin\n",
            "venv/lib/python3.11/site-packages/pkg/data.yaml": BROKEN,
            "web/node_modules/pkg/data.yaml": BROKEN,
        },
    )
    assert list(source.DirectorySnapshot(root).yaml_files()) == ["extension.yaml"]
    commit_all(root)
    assert list(GitSnapshot.at(root, "HEAD").yaml_files()) == ["extension.yaml"]


def test_in_a_git_work_tree_what_git_ignores_is_skipped(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path / "repo",
        {
            ".gitignore": "outputs/\n*.local.yaml\n",
            "extension.yaml": EXTENSION,
            "jobs/train.yml": JOB,
            "jobs/basics/.gitignore": "# what a workspace run leaves behind\nlogs/\n",
            "jobs/basics/logs/run.yaml": BROKEN,
            "outputs/broken.yaml": BROKEN,
            "mine.local.yaml": BROKEN,
        },
    )
    commit_all(root)
    (root / "jobs/new.yml").write_text(JOB.replace("name: train", "name: new"))  # untracked
    result = reconciler("validate", "repo", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (
        0,
        "repo is valid: 1 extension, 0 instance types, 2 jobs, 0 deployments, 0 endpoints\n",
    )
    # Below the root as well: git's rules of the whole work tree apply.
    assert list(source.DirectorySnapshot(root / "jobs").yaml_files()) == ["new.yml", "train.yml"]
    # An ignored folder named as PATH is read: the user asked for it.
    assert list(source.DirectorySnapshot(root / "outputs").yaml_files()) == ["broken.yaml"]


def test_a_file_named_as_path_is_read_whatever_its_name(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {".hidden.yaml": JOB, ".sourceignore": "*.yaml\n"})
    assert list(source.DirectorySnapshot(root / ".hidden.yaml").yaml_files()) == [".hidden.yaml"]
