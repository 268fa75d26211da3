"""One grammar for every command (issue 30): `-o/--output` names a format and only that, a name
is the argument NAME and a folder the argument PATH, every name lookup says "did you mean",
colour only through `common.colour_wanted`, and `reconciler completion` prints click's script.

The first tests walk the whole click tree (every lazily loaded command included), so a command
added later that spells its output flag otherwise, or takes `--name` / `--path`, fails here.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import git
import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import completion, score
from reconciler.cli import main as cli

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO_ROOT / "manifests")
FORMATS = {"text", "table", "wide", "json", "yaml", "markdown"}
# Output flags that offer json without yaml, and why: `apply -o json` is a stream of JSON lines,
# one per event as it happens, read line by line; a YAML stream adds nothing to that.
JSON_ONLY = {"apply": "JSON lines, one per event as it happens"}
# Options that say which name or folder, spelled so that they may not come back.
BANNED = {"--name", "--path", "--format", "--file-format"}
# Argument names as `-h` shows them.
ARGUMENT_NAMES = {"NAME", "PATH", "[PATH]", "SHELL", "[ARGS]..."}


def commands() -> Iterator[tuple[str, click.Command]]:
    """Every leaf command of the tree, as `reconciler a b`."""

    def walk(command: click.Command, path: str, ctx: click.Context) -> Iterator[Any]:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                yield from walk(sub, f"{path} {name}", click.Context(sub, ctx, info_name=name))
        else:
            yield path, command

    yield from walk(cli.main, "", click.Context(cli.main, info_name="reconciler"))


ALL = dict((path.strip(), command) for path, command in commands())


def test_the_walk_sees_every_command() -> None:
    assert len(ALL) > 30
    for expected in ("diff", "plan", "job status", "router token", "completion", "router top"):
        assert expected in ALL


@pytest.mark.parametrize("name", sorted(ALL))
def test_an_output_flag_is_always_dash_o_output_and_names_a_format(name: str) -> None:
    for param in ALL[name].params:
        spelled = {*param.opts, *param.secondary_opts}
        if not isinstance(param, click.Option) or not spelled & {"-o", "--output"}:
            continue
        assert sorted(spelled) == ["--output", "-o"], f"{name}: {spelled}"
        assert param.name == "output_format", name
        assert isinstance(param.type, click.Choice), f"{name}: -o takes a format, not a file"
        choices = set(param.type.choices)
        assert choices <= FORMATS, f"{name}: {choices - FORMATS}"
        if "json" in choices and name not in JSON_ONLY:
            assert "yaml" in choices, f"{name}: json without yaml"


@pytest.mark.parametrize("name", sorted(ALL))
def test_names_and_folders_are_arguments(name: str) -> None:
    for param in ALL[name].params:
        if isinstance(param, click.Option):
            assert not BANNED & {*param.opts, *param.secondary_opts}, f"{name}: {param.opts}"
        else:
            shown = param.human_readable_name
            if param.nargs == -1:
                shown = f"[{shown}]..."
            assert shown in ARGUMENT_NAMES, f"{name}: argument {shown}"
            if isinstance(param.type, click.Path):
                assert shown in ("PATH", "[PATH]"), f"{name}: a folder is PATH, not {shown}"


def test_colour_goes_through_colour_wanted() -> None:
    """Every command module that colours (click.style / secho / ANSI escapes) asks
    `common.colour_wanted` (a terminal, and NO_COLOR unset) or a terminal itself."""
    colouring = re.compile(r"click\.style\(|\bsecho\(|\\x1b\[\d*(;\d+)*m")
    for module in sorted((REPO_ROOT / "reconciler" / "cli").glob("*.py")):
        text = module.read_text()
        if colouring.search(text):
            assert "colour_wanted()" in text, module.name


# --- -o json / -o yaml, parsed ------------------------------------------------------------------


def parsed(args: list[str], output_format: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli.main, [*args, "-o", output_format])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    load = json.loads if output_format == "json" else yaml.safe_load
    return result.exit_code, load(result.stdout)


@pytest.mark.parametrize("output_format", ["json", "yaml"])
def test_validate_prints_its_problems_as_json_or_yaml(output_format: str) -> None:
    code, problems = parsed(["validate", EXAMPLE], output_format)
    assert code == 0
    assert [p["severity"] for p in problems] == ["note"]
    assert problems[0]["file"].endswith("deployments/blue.yaml")


def test_diff_prints_the_same_document_as_json_and_as_yaml(tmp_path: Path) -> None:
    repository = git.Repo.init(tmp_path)
    shutil.copytree(EXAMPLE, tmp_path / "manifests")
    repository.index.add(["manifests"])
    repository.index.commit("manifests")
    endpoint = tmp_path / "manifests" / "deployments" / "endpoint.yaml"
    endpoint.write_text(
        endpoint.read_text().replace("blue: 90", "blue: 80").replace("green: 10", "green: 20")
    )
    args = ["diff", str(tmp_path / "manifests"), "--base", "HEAD"]
    code, as_json = parsed(args, "json")
    assert (code, parsed(args, "yaml")) == (1, (1, as_json))
    assert as_json["traffic"] == ["mnist: blue 90 -> 80, green 10 -> 20"]


@pytest.mark.parametrize("output_format", ["json", "yaml"])
def test_install_prints_its_objects_as_json_or_yaml(output_format: str) -> None:
    args = ["install", "--repo", "https://git.example.com/ml.git"]
    result = CliRunner().invoke(cli.main, [*args, "-o", output_format])
    assert result.exit_code == 0, result.output
    if output_format == "json":
        kinds = [o["kind"] for o in json.loads(result.output)["items"]]
    else:
        kinds = [o["kind"] for o in yaml.safe_load_all(result.output)]
    assert "Deployment" in kinds


@pytest.mark.parametrize("output_format", ["json", "yaml"])
def test_router_token_prints_json_or_yaml(output_format: str, tmp_path: Path) -> None:
    key = tmp_path / "signing"
    key.write_text("k" * 32)
    code, token = parsed(["router", "token", "blue", "--signing-key-file", str(key)], output_format)
    assert code == 0 and set(token) >= {"accessToken", "expiryOn", "refreshAfter"}


def test_wide_adds_columns_to_the_status_table() -> None:
    from reconciler.cli import reconcile as reconcilecli

    summary = {"name": "ml", "provisioningState": "Succeeded", "lastAppliedRevision": "a" * 40,
               "lastAttemptedRevision": "b" * 40, "objects": 3, "drifted": 1,
               "suspended": True, "owner": "", "reasons": []}  # fmt: skip
    narrow, wide = (reconcilecli.table([summary], wide=w).splitlines() for w in (False, True))
    assert narrow[0].split() == ["NAME", "STATE", "REVISION", "OBJECTS", "OWNER"]
    assert wide[0].split() == [*narrow[0].split(), "ATTEMPTED", "DRIFTED", "SUSPENDED"]
    assert wide[1].split()[-3:] == ["b" * 12, "1", "True"]


# --- NAME and PATH are arguments; a missed name says "did you mean" ----------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deployment", "regen-key", "bleu", EXAMPLE, "--key", "primary"], "deployment named"),
        (["endpoint", "regen-key", "mnsit", EXAMPLE, "--key", "primary"], "endpoint named"),
        (["deployment", "logs", "gren", EXAMPLE], "deployment named"),
    ],
)
def test_a_name_the_repo_lacks_names_the_nearest_before_any_cluster(
    args: list[str], message: str
) -> None:
    """NAME then PATH, both arguments; the repo is read before the cluster, so a typo is a
    usage error (exit 2) with a suggestion, with no cluster to reach."""
    result = CliRunner().invoke(cli.main, [*args, "--kubeconfig", __file__])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert re.search(r"\(did you mean (blue|mnist|green)\?\)", result.output), result.output


def test_a_job_name_the_repo_lacks_names_the_nearest() -> None:
    result = CliRunner().invoke(cli.main, ["job", "logs", "hello", EXAMPLE])
    assert result.exit_code == 2, result.output
    assert "no job named 'hello'" in result.output and "(did you mean " in result.output


def test_score_suggests_the_nearest_name_the_routers_serve() -> None:
    served = {
        "deployments": [{"name": "blue"}, {"name": "green"}],
        "endpoints": [{"name": "mnist", "traffic": {"blue": 100}}],
    }
    config_map = {
        "metadata": {"name": "azureml-fe-v2-config", "namespace": "azureml"},
        "data": {"router.yaml": yaml.safe_dump(served)},
    }
    assert score.served_names([config_map]) == {"blue", "green", "mnist"}
    target = score.find_target([config_map], "mnist")
    assert target is not None
    problem = score.deployment_problem(target, "bleu")
    assert problem == "bleu is not a deployment of endpoint mnist (did you mean blue?) (its: blue)"


# --- completion -------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_completion_prints_clicks_script_for_each_shell(shell: str) -> None:
    result = CliRunner().invoke(cli.main, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert f"{completion.COMPLETE_VAR}={shell}_complete" in result.output


def test_the_script_completes_commands_and_options() -> None:
    """What the installed script asks the program for: commands, then a command's options."""

    def complete(words: str, index: int) -> list[str]:
        env = {completion.COMPLETE_VAR: "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(index)}  # fmt: skip
        result = CliRunner().invoke(cli.main, [], env=env, prog_name="reconciler")
        return [line.split(",", 1)[1] for line in result.output.splitlines()]

    assert "completion" in complete("reconciler comp", 1)
    assert "--output" in complete("reconciler plan --out", 2)
    assert complete("reconciler completion z", 2) == ["zsh"]


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli.main, ["completion", "tcsh"])
    assert result.exit_code == 2
