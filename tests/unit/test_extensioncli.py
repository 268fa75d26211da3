"""`reconciler extension create|update|delete` on repos on disk, with and without git."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import git
import pytest
from click.testing import CliRunner, Result

from reconciler import source
from reconciler.cli import main as cli
from reconciler.cli import repochange
from tests.helpers import commit_all, git_work_tree, load, self_signed_pem, write_repo

JOB = """
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
command: python -c "print('hi')"
environment: {docker: {image: python}}
"""

EXTENSION = """\
# Our cluster's extension. Keep the router on one replica until we have 3 nodes.
apiVersion: gitops.mlext.io/v1alpha1
kind: Extension
metadata:
  name: azureml-extension
spec:
  clusterType: managedClusters
  config:
    enableTraining: True          # the product's own spelling
    enableInference: true
    inferenceRouterServiceType: NodePort
    allowInsecureConnections: true
    inferenceRouterHA: false
"""

SECRET = "certs/hunter2-key.pem"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, ["extension", *args])


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below root (outside .git) with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def refused(root: Path, *args: str) -> list[str]:
    """The output lines of an `extension` command on the repo `root` that must fail (exit 1)
    and leave every file of it as it was."""
    before = snapshot(root)
    result = run(*args, str(root))
    assert result.exit_code == 1, result.output
    assert snapshot(root) == before
    return result.output.splitlines()


@pytest.fixture
def plain_repo(tmp_path: Path) -> Path:
    return write_repo(tmp_path / "repo", {"infra/ext.yaml": EXTENSION, "jobs/hello.yml": JOB})


@pytest.fixture
def git_repo(plain_repo: Path) -> git.Repo:
    return commit_all(plain_repo)


def committed_files(work_tree: git.Repo) -> list[str]:
    return sorted(str(path) for path in work_tree.head.commit.stats.files)


# --- create ----------------------------------------------------------------------------------


def test_create_writes_a_valid_manifest_under_extensions(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    result = run(
        "create",
        "ml",
        str(root),
        "--cluster-type",
        "connectedClusters",
        "--config",
        "enableTraining=true",
        "--config",
        "nodeSelector.pool=gpu",
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"created extension ml in {root}/extensions/ml.yaml\n"
    written = (root / "extensions/ml.yaml").read_text()
    assert "clusterType: connectedClusters" in written
    assert "nodeSelector.pool: gpu" in written
    loaded = load(root)
    assert loaded.valid
    assert loaded.repo.extensions["ml"].settings.node_selector == {"pool": "gpu"}
    assert not [p for p in root.rglob("*.tmp")]


def test_create_refuses_a_name_the_repo_already_has(plain_repo: Path) -> None:
    assert refused(plain_repo, "create", "azureml-extension") == [
        f"{plain_repo}/infra/ext.yaml:5: metadata.name: extension 'azureml-extension' already "
        "exists (change it with: reconciler extension update)"
    ]


def test_create_adds_a_document_to_an_existing_file(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"infra/ext.yaml": EXTENSION.replace("True ", "true ")})
    result = run(
        "create", "second", str(root), "--file", "infra/ext.yaml",
        "--config", "enableTraining=true",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = (root / "infra/ext.yaml").read_text()
    assert text.startswith(EXTENSION.replace("True ", "true ") + "---\napiVersion:")
    assert sorted(load(root).repo.extensions) == ["azureml-extension", "second"]


def test_create_that_would_make_the_repo_invalid_writes_nothing(plain_repo: Path) -> None:
    assert refused(plain_repo, "create", "second", "--config", "enableTraining=true") == [
        f"{plain_repo}/jobs/hello.yml:1: name: compute must name one of the repo's extensions "
        "(azureml-extension, second)",
        "1 problem: extension second not created, nothing was written",
    ]
    assert not (plain_repo / "extensions").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["../escape"], "Invalid value for NAME"),
        (["ok", "--file", "../outside.yaml"], "Invalid value for --file"),
        (["ok", "--file", "ext.txt"], "must be a .yaml or .yml file"),
        (["ok", "--config", "enableTraining"], "expected KEY=VALUE (got 'enableTraining')"),
        (["ok", "--cluster-type", "aks"], "Invalid value for '--cluster-type'"),
    ],
)
def test_create_usage_errors_exit_2(plain_repo: Path, args: list[str], message: str) -> None:
    result = run("create", args[0], str(plain_repo), *args[1:])
    assert result.exit_code == 2
    assert message in result.output


# --- update ----------------------------------------------------------------------------------


def test_update_edits_in_place_and_commits_only_that_file(
    plain_repo: Path, git_repo: git.Repo
) -> None:
    (plain_repo / "jobs/hello.yml").write_text(JOB + "# work in progress\n")
    (plain_repo / "notes.md").write_text("staged, not ours\n")
    git_repo.git.add("notes.md")
    result = run(
        "update", "azureml-extension", str(plain_repo),
        "--config", "inferenceRouterServiceType=LoadBalancer", "--config", "installPromOp=false",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sha = git_repo.head.commit.hexsha
    assert result.output == (
        f"updated extension azureml-extension in {plain_repo}/infra/ext.yaml: "
        f"set config.inferenceRouterServiceType, config.installPromOp (commit {sha[:7]})\n"
    )
    assert git_repo.head.commit.message == (
        "extension update azureml-extension\n\n"
        "set config.inferenceRouterServiceType, config.installPromOp\n"
    )
    assert committed_files(git_repo) == ["infra/ext.yaml"]
    assert (plain_repo / "infra/ext.yaml").read_text() == EXTENSION.replace(
        "NodePort", "LoadBalancer"
    ) + "    installPromOp: false\n"
    # The unrelated changes are where they were: one staged, one only in the work tree.
    assert git_repo.git.status("--porcelain").splitlines() == [" M jobs/hello.yml", "A  notes.md"]


def test_no_commit_leaves_the_change_uncommitted(plain_repo: Path, git_repo: git.Repo) -> None:
    head = git_repo.head.commit.hexsha
    result = run(
        "update", "azureml-extension", str(plain_repo), "--no-commit",
        "--config", "installVolcano=false",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert git_repo.head.commit.hexsha == head
    assert git_repo.git.status("--porcelain") == " M infra/ext.yaml"


def test_a_repo_in_a_subfolder_of_the_work_tree_commits_there(tmp_path: Path) -> None:
    top = tmp_path / "project"
    root = write_repo(top / "deploy/manifests", {"ext.yaml": EXTENSION})
    work_tree = git_work_tree(top)
    result = run("create", "second", str(root), "--config", "enableTraining=true")
    assert result.exit_code == 0, result.output
    assert committed_files(work_tree) == ["deploy/manifests/extensions/second.yaml"]
    assert work_tree.head.commit.message == "extension create second\n"
    assert "ext.yaml" in work_tree.git.status("--porcelain")  # never ours to commit


def test_an_invalid_update_leaves_every_file_unchanged(
    plain_repo: Path, git_repo: git.Repo
) -> None:
    head = git_repo.head.commit.hexsha
    output = refused(
        plain_repo, "update", "azureml-extension",
        "--config", "inferenceRouterServiceType=Ingress", "--config", "installVolcanno=false",
    )  # fmt: skip
    assert output == [
        f"{plain_repo}/infra/ext.yaml:11: spec.config.inferenceRouterServiceType: must be one of "
        "LoadBalancer, NodePort, ClusterIP (got 'Ingress')",
        f"{plain_repo}/infra/ext.yaml:11: spec.config.inferenceRouterServiceType: required when "
        "enableInference is true (one of LoadBalancer, NodePort, ClusterIP)",
        f"{plain_repo}/infra/ext.yaml:14: spec.config.installVolcanno: unknown setting "
        "(did you mean installVolcano?)",
        "3 problems: extension azureml-extension not updated, nothing was written",
    ]
    assert git_repo.head.commit.hexsha == head


def test_problems_the_repo_already_had_do_not_block_a_fix(plain_repo: Path) -> None:
    ext = plain_repo / "infra/ext.yaml"
    ext.write_text(EXTENSION.replace("allowInsecureConnections: true", "sslCname: ml.example"))
    assert not load(plain_repo).valid  # HTTPS without TLS material
    result = run(
        "update", "azureml-extension", str(plain_repo),
        "--config", "allowInsecureConnections=true", "--remove-config", "sslCname",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load(plain_repo).valid


def test_a_protected_value_is_never_printed(plain_repo: Path, git_repo: git.Repo) -> None:
    failed = run(
        "update", "azureml-extension", str(plain_repo),
        "--config-protected", f"sslKeyPemFile={SECRET}",
    )  # fmt: skip
    assert failed.exit_code == 1
    assert "hunter2" not in failed.output
    assert "spec.configProtected.sslKeyPemFile: no such file relative to infra/" in failed.output

    write_repo(plain_repo, {SECRET: "not a real key\n"})
    wrong_section = run(
        "update", "azureml-extension", str(plain_repo),
        "--config", f"sslSecret={SECRET}", "--config-protected", f"sslCertPemFile={SECRET}",
    )  # fmt: skip
    assert wrong_section.exit_code == 1
    assert "hunter2" not in wrong_section.output

    bad_argument = run(
        "update", "azureml-extension", str(plain_repo),
        "--config-protected", SECRET,
    )  # fmt: skip
    assert bad_argument.exit_code == 2
    assert "hunter2" not in bad_argument.output


@pytest.mark.parametrize(
    "value",
    [
        "certs//hunter2-key.pem",  # a path that normalises to another text
        "certs/./hunter2-key.pem",
        "-----BEGIN PRIVATE KEY-----\nhunter2hunter2\n-----END PRIVATE KEY-----\n",
    ],
    ids=["double-slash", "dot-segment", "inline-pem"],
)
def test_a_protected_value_of_any_shape_is_never_printed(plain_repo: Path, value: str) -> None:
    """The old redaction matched the value's text, so a value the message normalised (or
    quoted) got through; now no message quotes a protected value at all."""
    failed = run(
        "update", "azureml-extension", str(plain_repo),
        "--config-protected", f"sslKeyPemFile={value}",
    )  # fmt: skip
    assert failed.exit_code == 1
    assert "hunter2" not in failed.output
    assert "spec.configProtected.sslKeyPemFile" in failed.output
    assert "nothing was written" in failed.output


def test_a_protected_value_is_written_but_not_echoed_on_success(git_repo: git.Repo) -> None:
    root = Path(str(git_repo.working_tree_dir))
    cert, key = self_signed_pem()
    write_repo(root, {"infra/certs/hunter2-cert.pem": cert, "infra/certs/hunter2-key.pem": key})
    result = run(
        "update", "azureml-extension", str(root),
        "--config", "allowInsecureConnections=false", "--config", "sslCname=ml.example.com",
        "--config-protected", "sslCertPemFile=certs/hunter2-cert.pem",
        "--config-protected", "sslKeyPemFile=certs/hunter2-key.pem",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert "configProtected.sslKeyPemFile" in result.output
    assert "hunter2" not in git_repo.head.commit.message
    text = (root / "infra/ext.yaml").read_text()
    assert text.endswith("  configProtected:\n    sslCertPemFile: certs/hunter2-cert.pem\n"
                         "    sslKeyPemFile: certs/hunter2-key.pem\n")  # fmt: skip


def test_an_update_that_changes_nothing_writes_nothing(
    plain_repo: Path, git_repo: git.Repo
) -> None:
    head = git_repo.head.commit.hexsha
    result = run(
        "update", "azureml-extension", str(plain_repo),
        "--config", "enabletraining=TRUE",
    )  # fmt: skip
    assert result.exit_code == 0
    assert "already has these settings" in result.output
    assert git_repo.head.commit.hexsha == head
    assert (plain_repo / "infra/ext.yaml").read_text() == EXTENSION


def test_update_keeps_the_file_permissions(plain_repo: Path) -> None:
    ext = plain_repo / "infra/ext.yaml"
    ext.chmod(0o640)
    result = run("update", "azureml-extension", str(plain_repo), "--config", "openshift=true")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(ext.stat().st_mode) == 0o640
    assert sorted(os.listdir(ext.parent)) == ["ext.yaml"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["absent", "--config", "a=b"], 1, "no extension named 'absent' in "),
        (["azureml-extensio", "--config", "a=b"], 1, "(did you mean azureml-extension?)"),
        (["azureml-extension", "--remove-config", "sslCname"], 1, "has no setting sslCname"),
        (["azureml-extension"], 2, "nothing to update"),
        (["azureml-extension", "--config", "sslCname="], 2, "sslCname has no value"),
    ],
)
def test_update_errors(plain_repo: Path, args: list[str], code: int, message: str) -> None:
    before = snapshot(plain_repo)
    result = run("update", args[0], str(plain_repo), *args[1:])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert snapshot(plain_repo) == before


def test_an_extension_declared_twice_is_not_guessed_at(plain_repo: Path) -> None:
    write_repo(plain_repo, {"copy.yaml": EXTENSION})
    result = run("update", "azureml-extension", str(plain_repo), "--config", "a=b")
    assert result.exit_code == 1
    assert result.output == (
        f"extension 'azureml-extension' is declared more than once ({plain_repo}/copy.yaml:5, "
        f"{plain_repo}/infra/ext.yaml:5): fix the repo first\n"
    )


# --- delete ----------------------------------------------------------------------------------


def test_delete_removes_the_file_of_a_lone_extension_and_commits(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"infra/ext.yaml": EXTENSION, "infra/other.yaml": EXTENSION})
    (root / "infra/other.yaml").write_text(EXTENSION.replace("azureml-extension", "other"))
    work_tree = commit_all(root)
    result = run("delete", "other", str(root))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"deleted extension other: removed {root}/infra/other.yaml (")
    assert not (root / "infra/other.yaml").exists()
    assert work_tree.head.commit.message == "extension delete other\n"
    assert committed_files(work_tree) == ["infra/other.yaml"]
    assert work_tree.git.status("--porcelain") == ""


def test_delete_removes_one_document_of_several(tmp_path: Path) -> None:
    second = EXTENSION.replace("azureml-extension", "second")
    types = "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\nmetadata: {name: cpu}\n"
    types += "spec: {resources: {requests: {cpu: 100m, memory: 1Gi}}}\n"
    root = write_repo(tmp_path, {"all.yaml": f"{EXTENSION}---\n{second}---\n{types}"})
    result = run("delete", "second", str(root))
    assert result.exit_code == 0, result.output
    assert result.output == f"deleted extension second: removed its document from {root}/all.yaml\n"
    assert (root / "all.yaml").read_text() == f"{EXTENSION}---\n{types}"


def test_delete_is_refused_while_workloads_run_on_the_extension(plain_repo: Path) -> None:
    assert refused(plain_repo, "delete", "azureml-extension") == [
        f"{plain_repo}/jobs/hello.yml:1: name: needs an Extension in the repo to run on "
        "(none is declared)",
        "1 problem: extension azureml-extension not deleted, nothing was written",
    ]


def test_delete_of_a_never_committed_file_makes_no_commit(tmp_path: Path) -> None:
    types = "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\nmetadata: {name: cpu}\n"
    types += "spec: {resources: {requests: {cpu: 100m, memory: 1Gi}}}\n"
    root = write_repo(tmp_path, {"types.yaml": types})
    work_tree = commit_all(root)
    head = work_tree.head.commit.hexsha
    (root / "new.yaml").write_text(EXTENSION)
    work_tree.git.add("new.yaml")  # staged, never committed
    result = run("delete", "azureml-extension", str(root))
    assert result.exit_code == 0, result.output
    assert result.output == f"deleted extension azureml-extension: removed {root}/new.yaml\n"
    assert work_tree.head.commit.hexsha == head
    assert not (root / "new.yaml").exists()
    assert work_tree.git.status("--porcelain") == ""


# --- the overlay the edit is validated on ---------------------------------------------------


def test_the_overlay_sees_the_edit_and_nothing_else(plain_repo: Path) -> None:
    base = source.DirectorySnapshot(plain_repo)
    added = repochange.Overlay(base, "extensions/new.yaml", "kind: Extension\n")
    assert list(added.yaml_files()) == ["extensions/new.yaml", "infra/ext.yaml", "jobs/hello.yml"]
    assert added.exists("extensions") and added.is_dir("extensions")
    assert added.files_under("extensions") == ["extensions/new.yaml"]
    assert added.read_text("extensions/new.yaml") == "kind: Extension\n"
    removed = repochange.Overlay(base, "infra/ext.yaml", None)
    assert list(removed.yaml_files()) == ["jobs/hello.yml"]
    assert not removed.exists("infra/ext.yaml")
    assert removed.files_under("infra") == []


def test_an_edit_back_to_what_head_has_makes_no_commit(
    plain_repo: Path, git_repo: git.Repo
) -> None:
    ext = plain_repo / "infra/ext.yaml"
    ext.write_text(EXTENSION.replace("inferenceRouterHA: false", "inferenceRouterHA: true"))
    head = git_repo.head.commit.hexsha
    result = run(
        "update", "azureml-extension", str(plain_repo),
        "--config", "inferenceRouterHA=false",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.endswith("set config.inferenceRouterHA\n")
    assert git_repo.head.commit.hexsha == head
    assert git_repo.git.status("--porcelain") == ""
