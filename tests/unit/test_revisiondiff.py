"""`reconciler diff`: two git revisions of a manifests repo compared with no cluster.

Every test builds a real temporary git repository (gitpython: init, write, commit), so the
`GitSnapshot` reads real tree objects. Covers the bundled example, identical revisions, an empty
base, invalid heads and bases, a rotated TLS certificate whose key material must never show in
any format, the PR-comment cap, and the snapshot protocol against `DirectorySnapshot`.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from click.testing import CliRunner

from reconciler import gitsnapshot, objects, source
from reconciler.cli import main as cli
from reconciler.engine import diffs, plans, revisiondiff
from reconciler.model import repo
from reconciler.printers import revisiondiff as printed
from reconciler.render import render
from tests.helpers import extension, self_signed_pem, write_repo

REPO_ROOT = Path(__file__).resolve().parents[2]
ROUTER = ("update", "Deployment", "azureml", "azureml-fe-v2")


def init(root: Path) -> git.Repo:
    repository = git.Repo.init(root)
    with repository.config_writer() as config:
        config.set_value("user", "name", "test")
        config.set_value("user", "email", "test@example.com")
    return repository


def commit(repository: git.Repo, message: str) -> str:
    repository.git.add(A=True)
    return str(repository.index.commit(message).hexsha)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["diff", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def changes(path: Path, *args: str) -> tuple[int, list[tuple[str, str, str, str]], Any]:
    code, out = run(str(path), *args, "-o", "json")
    document = json.loads(out)
    found = [(c["action"], c["kind"], c["namespace"], c["name"]) for c in document["changes"]]
    return code, found, document


@pytest.fixture
def example(tmp_path: Path) -> tuple[git.Repo, Path, str]:
    """The bundled example in `manifests/` of a fresh repo, after a README-only first commit."""
    repository = init(tmp_path)
    (tmp_path / "README.md").write_text("manifests\n")
    first = commit(repository, "readme")
    shutil.copytree(REPO_ROOT / "manifests", tmp_path / "manifests")
    commit(repository, "manifests")
    return repository, tmp_path / "manifests", first


def enable_router_ha(folder: Path) -> None:
    extension = folder / "infra" / "extension.yaml"
    text = extension.read_text()
    assert "inferenceRouterHA: false" in text
    extension.write_text(text.replace("inferenceRouterHA: false", "inferenceRouterHA: true"))


def test_a_setting_change_updates_exactly_the_router_deployment(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    enable_router_ha(folder)
    commit(repository, "router HA")
    code, found, document = changes(folder, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 1
    assert found == [ROUTER]
    assert "-  replicas: 1" in document["changes"][0]["diff"]
    assert "+  replicas: 3" in document["changes"][0]["diff"]
    assert document["problems"] == []


def test_a_scoring_script_edit_shows_the_rollout_of_both_deployments_that_load_it(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    script = folder / "deployments" / "score" / "score.py"
    script.write_text(script.read_text().replace("+ bias for row", "+ 2 * bias for row"))
    commit(repository, "score: double the bias")
    code, found, document = changes(folder, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 1
    assert [(action, kind, name) for action, kind, _, name in found] == [
        ("update", "ConfigMap", "blue-code"),
        ("update", "ConfigMap", "green-code"),
        ("update", "Deployment", "blue"),
        ("update", "Deployment", "green"),
    ]
    for change in document["changes"][2:]:
        lines = change["diff"].splitlines()
        digest = [line for line in lines if "gitops.mlext.io/content-digest" in line]
        # The pod template's digest line is the one line changed: what rolls the pods.
        assert [line[0] for line in digest] == ["-", "+"], change["diff"]
        assert digest[0][1:] != digest[1][1:]
        changed = [line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        assert changed == digest, change["diff"]


def test_a_job_file_edit_shows_on_the_job_and_leaves_its_pod_template_alone(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    script = folder / "jobs" / "src" / "train.py"
    script.write_text(script.read_text() + "# one more epoch\n")
    commit(repository, "train: a comment")
    code, found, document = changes(folder, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 1
    assert [(action, kind, name) for action, kind, _, name in found] == [
        ("update", "ConfigMap", "train-mnist-code"),
        ("update", "Job", "train-mnist"),
    ]
    # The Job's own digest changes; its pod template (immutable in a batch Job) does not.
    changed = [line for line in document["changes"][1]["diff"].splitlines()
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]  # fmt: skip
    # metadata.annotations (four spaces in), not spec...template.metadata.annotations
    assert [line.split(":")[0] for line in changed] == [
        "-    gitops.mlext.io/content-digest",
        "+    gitops.mlext.io/content-digest",
    ], changed


def test_head_left_out_is_the_work_tree(example: tuple[git.Repo, Path, str]) -> None:
    _, folder, _ = example
    assert changes(folder, "--base", "HEAD")[:2] == (0, [])
    enable_router_ha(folder)  # not committed
    assert changes(folder, "--base", "HEAD")[:2] == (1, [ROUTER])
    code, out = run(str(folder), "--base", "HEAD")
    assert code == 1
    assert "# extension azureml-extension" in out
    assert "~ update Deployment/azureml/azureml-fe-v2" in out
    assert "\x1b[" not in out  # no colour when stdout is not a terminal


def test_identical_revisions_have_no_changes(example: tuple[git.Repo, Path, str]) -> None:
    _, folder, _ = example
    for output_format in ("text", "json", "markdown"):
        code, out = run(str(folder), "--base", "HEAD", "--head", "HEAD", "-o", output_format)
        assert code == 0, out
    assert changes(folder, "--base", "HEAD", "--head", "HEAD")[1] == []
    assert "No changes" in run(str(folder), "--base", "HEAD", "-o", "markdown")[1]


def test_an_empty_base_creates_everything(example: tuple[git.Repo, Path, str]) -> None:
    _, folder, first = example
    code, found, document = changes(folder, "--base", first, "--head", "HEAD")
    snapshot = source.DirectorySnapshot(folder)
    loaded = repo.load(snapshot)
    rendered = render.render_repo(loaded.repo, snapshot, "x").objects
    assert code == 1
    assert {action for action, *_ in found} == {"create"}
    assert len(found) == len(rendered)
    assert document["notes"] == [f"{first}:manifests does not exist: every object is created"]


def test_deleted_objects_come_last_in_reverse_apply_order(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    shutil.rmtree(folder)
    commit(repository, "manifests removed")
    code, found, _ = changes(folder.parent, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 1 and found and {a for a, *_ in found} == {"delete"}
    assert found[-1][1] == "CustomResourceDefinition"  # applied first, deleted last


def test_an_invalid_head_reports_its_problems_and_exits_2(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    extension = folder / "infra" / "extension.yaml"
    extension.write_text(extension.read_text().replace("clusterType:", "clusterTipe:"))
    commit(repository, "broken")
    code, found, document = changes(folder, "--base", "HEAD~1", "--head", "HEAD")
    assert (code, found) == (2, [])
    assert document["problems"] and document["problems"][0]["file"].startswith("HEAD:manifests/")
    code, out = run(str(folder), "--base", "HEAD~1", "--head", "HEAD")
    assert code == 2
    assert "HEAD:manifests/infra/extension.yaml:" in out
    code, out = run(str(folder), "--base", "HEAD~1", "--head", "HEAD", "-o", "markdown")
    assert code == 2
    assert "### Validation failed" in out and "HEAD:manifests/infra/extension.yaml:" in out


def test_an_invalid_base_is_a_note_and_compared_as_empty(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    extension = folder / "infra" / "extension.yaml"
    good = extension.read_text()
    extension.write_text(good.replace("clusterType:", "clusterTipe:"))
    commit(repository, "broken")
    extension.write_text(good)
    commit(repository, "fixed")
    code, found, document = changes(folder, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 1
    assert found and {a for a, *_ in found} == {"create"}
    assert "invalid" in document["notes"][0] and "HEAD~1:manifests" in document["notes"][0]
    assert "> **Note:**" in run(str(folder), "--base", "HEAD~1", "-o", "markdown")[1]


def test_bad_revision_or_no_git_is_an_error(
    example: tuple[git.Repo, Path, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, folder, _ = example
    result = CliRunner().invoke(cli.main, ["diff", str(folder), "--base", "no-such-ref"])
    assert result.exit_code == 2 and "no-such-ref" in result.stderr
    outside = tmp_path_factory.mktemp("plain")
    result = CliRunner().invoke(cli.main, ["diff", str(outside), "--base", "HEAD"])
    assert result.exit_code == 2 and "not inside a git work tree" in result.stderr


HTTPS = extension(
    """
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


def test_a_rotated_certificate_updates_the_secret_and_shows_no_key_material(
    tmp_path: Path,
) -> None:
    repository = init(tmp_path)
    old_cert, old_key = self_signed_pem()
    folder = write_repo(tmp_path / "repo", {"extension.yaml": HTTPS, "certs/cert.pem": old_cert,
                                            "certs/key.pem": old_key})  # fmt: skip
    commit(repository, "https")
    cert, key = self_signed_pem()
    write_repo(folder, {"certs/cert.pem": cert, "certs/key.pem": key})
    commit(repository, "rotated")
    code, found, _ = changes(folder, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 1
    assert [c for c in found if c[1] == "Secret"] and all(a == "update" for a, *_ in found)
    secrets = {cert, key, old_cert, old_key}
    for ref in ("HEAD~1", "HEAD"):
        snapshot = gitsnapshot.GitSnapshot.at(folder, ref)
        secrets |= {snapshot.read_bytes("certs/cert.pem"), snapshot.read_bytes("certs/key.pem")}
    for output_format in ("text", "json", "markdown"):
        out = run(str(folder), "--base", "HEAD~1", "--head", "HEAD", "-o", output_format)[1]
        assert "BEGIN" not in out and "PRIVATE" not in out
        assert diffs.CHANGED in out, output_format
        for pem in secrets:
            encoded = base64.b64encode(pem).decode()
            body = "".join(pem.decode().splitlines()[1:-1])
            for material in (encoded, body):
                for start in range(0, len(material) - 16, 8):
                    assert material[start : start + 16] not in out, output_format


def test_markdown_lists_each_change_in_a_collapsed_diff(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    enable_router_ha(folder)
    commit(repository, "router HA")
    code, out = run(str(folder), "--base", "HEAD~1", "-o", "markdown")
    assert code == 1
    assert out.startswith(f"{printed.COMMENT_MARKER}\n## Manifests diff `")
    assert "| `azureml-extension` | 0 | 1 | 0 |" in out
    assert "<details><summary>~ update Deployment/azureml/azureml-fe-v2</summary>" in out
    assert "```diff\n--- a/Deployment/azureml/azureml-fe-v2" in out and "</details>" in out


def test_a_traffic_change_is_one_line_per_endpoint_at_the_top_of_every_format(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    endpoint = folder / "deployments" / "endpoint.yaml"
    split = endpoint.read_text()
    assert "blue: 90" in split and "green: 10" in split
    endpoint.write_text(split.replace("blue: 90", "blue: 100").replace("green: 10", "green: 0"))
    commit(repository, "all traffic to blue")
    endpoint.write_text(split)
    commit(repository, "10 % to green")
    line = "mnist: blue 100 -> 90, green 0 -> 10"

    code, found, document = changes(folder, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 1 and document["traffic"] == [line]
    # Besides the object diff: the router's ConfigMap is what changes.
    assert found == [("update", "ConfigMap", "azureml", "azureml-fe-v2-config")]
    _, out = run(str(folder), "--base", "HEAD~1", "-o", "markdown")
    assert out.index(f"- `{line}`") < out.index("| Extension |")
    _, out = run(str(folder), "--base", "HEAD~1")
    assert out.splitlines()[0] == f"traffic: {line}"
    # No traffic change, no line.
    enable_router_ha(folder)
    commit(repository, "router HA")
    _, _, document = changes(folder, "--base", "HEAD~1", "--head", "HEAD")
    assert document["traffic"] == []


def test_traffic_lines_name_new_removed_and_mirrored_endpoints() -> None:
    def endpoint(name: str, traffic: dict[str, int], mirror: dict[str, int]) -> Any:
        # As router.yaml lists an endpoint (`workloadobjects.endpoint_entry`).
        return {"name": name, "traffic": traffic, "mirror_traffic": mirror}

    base = {"a": endpoint("a", {"x": 100}, {}), "gone": endpoint("gone", {"y": 100}, {})}
    head = {"a": endpoint("a", {"x": 100}, {"z": 20}), "b": endpoint("b", {"x": 0}, {})}
    assert revisiondiff.traffic_changes(base, head) == (
        "a: mirror z 0 -> 20",
        "b (new): no traffic",
        "gone (removed): y 100 -> 0",
    )
    assert revisiondiff.traffic_changes(head, head) == ()


def test_traffic_lines_come_from_the_plans_so_a_live_base_gives_them_too() -> None:
    """`plan` and `diff --cluster` plan against the live cluster: the same lines come from the
    router's ConfigMap as it is live and as the dry run says it would be."""

    def router_config(blue: int, green: int) -> Any:
        served = {"endpoints": [{"name": "mnist", "traffic": {"blue": blue, "green": green}}]}
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "azureml-fe-v2-config",
                "namespace": "azureml",
                "labels": {"app.kubernetes.io/component": revisiondiff.ROUTER_CONFIG},
            },
            "data": {revisiondiff.ROUTER_CONFIG_KEY: yaml.safe_dump(served)},
        }

    live, wanted = router_config(100, 0), router_config(90, 10)
    key = objects.key(wanted)
    planned = plans.build([wanted], {key: wanted}, {key: live})
    extension = revisiondiff.ExtensionDiff("azureml-extension", planned)
    assert revisiondiff.traffic([extension]) == ("mnist: blue 100 -> 90, green 0 -> 10",)
    # Created (nothing live) and deleted (nothing wanted): the endpoint comes and goes.
    created = plans.build([wanted], {}, {})
    assert revisiondiff.traffic([revisiondiff.ExtensionDiff("e", created)]) == (
        "mnist (new): blue 0 -> 90, green 0 -> 10",
    )
    deleted = plans.build([], {}, {key: live}, [key])
    assert revisiondiff.traffic([revisiondiff.ExtensionDiff("e", deleted)]) == (
        "mnist (removed): blue 100 -> 0",
    )
    # Unchanged, or any other ConfigMap: no line.
    same = plans.build([live], {key: live}, {key: live})
    assert revisiondiff.traffic([revisiondiff.ExtensionDiff("e", same)]) == ()
    other = {**wanted, "metadata": {**wanted["metadata"], "labels": {}}}
    moved = plans.build([other], {}, {})
    assert revisiondiff.traffic([revisiondiff.ExtensionDiff("e", moved)]) == ()


def test_cap_keeps_whole_blocks_and_says_how_many_were_cut() -> None:
    head = "## heading\n"
    blocks = [f"<details>{i}{'x' * 40}</details>\n" for i in range(5)]
    assert printed.cap(head, blocks, 10_000) == head + "".join(blocks)
    capped = printed.cap(head, blocks, 300)
    assert len(capped) <= 300
    assert capped.startswith(head + blocks[0])
    kept = capped.count("<details>")
    assert kept == capped.count("</details>")  # never half a block
    assert f"**{5 - kept} objects' diffs were cut**" in capped
    assert len(printed.cap(head * 100, blocks, 50)) == 50


def test_full_comment_of_the_example_stays_under_the_limit(
    example: tuple[git.Repo, Path, str],
) -> None:
    _, folder, first = example
    out = run(str(folder), "--base", first, "-o", "markdown")[1]
    assert len(out) <= printed.COMMENT_LIMIT
    assert "diffs were cut**" in out


def deployment(name: str, extension: str, image: str = "x:1") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ns",
                         "labels": {objects.PART_OF_LABEL: extension}},
            "spec": {"replicas": 1, "image": image}}  # fmt: skip


def test_compare_groups_by_extension_and_moves_are_updates() -> None:
    base = [deployment("a", "one"), deployment("b", "one"), deployment("gone", "two")]
    head = [deployment("a", "one", "x:2"), deployment("b", "two"), deployment("new", "two")]
    found = {
        e.name: [(s.action.value, s.key.name) for s in e.plan.steps]
        for e in revisiondiff.compare(base, head)
    }
    assert found == {
        "one": [("update", "a")],
        "two": [("update", "b"), ("create", "new"), ("delete", "gone")],
    }
    same = revisiondiff.compare(base, base)
    assert not any(e.plan.has_changes for e in same)
    assert all(s.action is plans.Action.UNCHANGED for e in same for s in e.plan.steps)


def test_text_colours_lines_only_through_the_style_given() -> None:
    result = revisiondiff.RevisionDiff(
        "a" * 40, "b" * 40, revisiondiff.compare([], [deployment("a", "one")])
    )
    plain = printed.text(result)
    coloured = printed.text(result, lambda line, colour: f"<{colour}>{line}")
    assert "<green>+ create Deployment/ns/a" in coloured
    assert "<" not in plain.replace("<redacted", "")


def test_git_snapshot_reads_a_commit_like_the_work_tree(
    example: tuple[git.Repo, Path, str],
) -> None:
    repository, folder, _ = example
    (folder / "jobs" / "hello.yml").write_text("changed, not committed\n")
    at_head = gitsnapshot.GitSnapshot.at(folder, "HEAD")
    repository.git.checkout("--", ".")  # the work tree as committed, to compare with
    disk = source.DirectorySnapshot(folder)
    assert list(at_head.yaml_files()) == list(disk.yaml_files())
    for path in ("", "deployments", "deployments/model", "jobs/hello.yml", "infra"):
        assert at_head.exists(path) and disk.exists(path)
        assert at_head.is_dir(path) == disk.is_dir(path)
        assert at_head.size(path) == disk.size(path)
        assert at_head.files_under(path) == disk.files_under(path)
    assert not at_head.exists("nope") and not at_head.is_dir("jobs/hello.yml")
    assert at_head.read_bytes("jobs/hello.yml") == disk.read_bytes("jobs/hello.yml")
    assert at_head.read_text("infra/extension.yaml") == disk.read_text("infra/extension.yaml")
    assert at_head.revision() == repository.head.commit.hexsha == disk.revision()
    assert at_head.origin() == disk.origin()
    assert at_head.display("infra/extension.yaml") == "HEAD:manifests/infra/extension.yaml"
    repository.create_remote("origin", "https://user:secret-token@example.com/org/repo.git")
    assert at_head.origin() == disk.origin() == "https://example.com/org/repo.git//manifests"
    with pytest.raises(FileNotFoundError):
        at_head.read_bytes("nope.yaml")
