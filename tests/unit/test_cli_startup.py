"""The CLI's start-up: a command imports its own module, not every command's (`cli.lazygroup`).

Each run is a fresh interpreter (imports are per process), and what it reports is the modules
loaded once the command has finished: a command's module is imported when it runs, so a module
missing here was never needed.
"""

from __future__ import annotations

import gc
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from reconciler.cli import common, lazygroup
from reconciler.cli import main as cli
from reconciler.cli import router as routercli
from tests import helpers, tools

# Runs `reconciler ARGS` in this interpreter, then writes the names of the loaded modules to
# the file named by the first argument.
_RUN_AND_LIST_MODULES = """
import json, sys
from reconciler.cli import main
out, args = sys.argv[1], sys.argv[2:]
try:
    main.main(args, prog_name="reconciler")
finally:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
"""


def modules_after(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """The exit code of `reconciler ARGS` and the modules it had loaded when it finished."""
    listing = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST_MODULES, str(listing), *args],
        cwd=tools.ROOT,  # `-c` puts the working directory first: this checkout's package
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return result.returncode, set(json.loads(listing.read_text()))


def command_modules(loaded: set[str]) -> set[str]:
    """The modules of `reconciler.cli` that hold commands (not the group or its helpers)."""
    helpers_of_the_group = {
        "reconciler.cli",
        "reconciler.cli.main",
        "reconciler.cli.lazygroup",
        "reconciler.cli.common",  # the group pauses the collector while it imports a command
    }
    return {m for m in loaded if m.startswith("reconciler.cli.")} - helpers_of_the_group


def test_version_imports_no_command(tmp_path: Path) -> None:
    """`--version` needs only the group: no command module, no kubernetes client, no router."""
    code, loaded = modules_after(tmp_path, "--version")
    assert code == 0
    assert command_modules(loaded) == set()
    assert not {"kubernetes", "reconciler.kube", "reconciler.router", "git"} & loaded


@pytest.mark.parametrize(
    "args",
    [
        ("validate", str(helpers.EXAMPLE)),
        ("render", str(helpers.EXAMPLE)),
        ("install", "--repo", "https://example.com/manifests.git"),
    ],
    ids=["validate", "render", "install"],
)
def test_commands_without_a_cluster_start_without_the_kubernetes_client(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    code, loaded = modules_after(tmp_path, *args)
    assert code == 0
    assert "kubernetes" not in loaded
    assert "reconciler.kube" not in loaded
    # Only the command's own module (and the helpers it uses), not the others'.
    assert not {"reconciler.cli.reconcile", "reconciler.cli.sync", "reconciler.cli.router"} & (
        command_modules(loaded)
    )


def test_a_diff_of_two_revisions_starts_without_the_kubernetes_client(tmp_path: Path) -> None:
    """`diff --base` needs no cluster: only `--cluster` imports `clusterdiff` and the client."""
    code, loaded = modules_after(tmp_path, "diff", str(helpers.EXAMPLE), "--base", "HEAD")
    assert code in (0, 1)  # 1: the work tree's manifests differ from HEAD's
    assert "kubernetes" not in loaded
    assert "reconciler.cli.clusterdiff" not in loaded


def test_apply_loads_its_module_and_the_client_but_not_the_local_plane(tmp_path: Path) -> None:
    code, loaded = modules_after(tmp_path, "apply", "--help")
    assert code == 0
    assert {"reconciler.cli.reconcile", "kubernetes"} <= loaded
    assert not {"reconciler.localcluster.plane", "reconciler.router.proxy", "watchfiles"} & loaded


def test_libraries_a_valid_repo_does_not_need_are_imported_only_when_needed(
    tmp_path: Path,
) -> None:
    """jsonschema explains a rejected document (the compiled validator vouches for valid ones),
    Jinja renders (a warm render cache needs none), cryptography, pyrage and ruamel decrypt
    SOPS files or check TLS material: none of them is loaded by importing `apply` or by
    validating the example, and a schema error still gets jsonschema's explanation."""
    deferred = {"jsonschema", "referencing", "jinja2", "cryptography", "pyrage", "ruamel.yaml"}
    code, loaded = modules_after(tmp_path, "apply", "--help")
    assert code == 0 and "reconciler.cli.reconcile" in loaded
    assert not deferred & loaded
    code, loaded = modules_after(tmp_path, "validate", str(helpers.EXAMPLE))
    assert code == 0
    assert not deferred & loaded
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "types.yaml").write_text(
        "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\n"
        "metadata: {name: small}\nspec: {resources: lots}\n"
    )
    code, loaded = modules_after(tmp_path, "validate", str(tmp_path / "repo"))
    assert code == 1 and "jsonschema" in loaded


def test_a_lazy_command_is_imported_with_the_cycle_collector_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "probe_command.py").write_text(
        "import gc\nimport click\nCOLLECTING = gc.isenabled()\n"
        "@click.command()\ndef probe():\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    group = lazygroup.LazyGroup(lazy_subcommands={"probe": "probe_command.probe"})
    assert gc.isenabled()
    assert isinstance(group.get_command(click.Context(group), "probe"), click.Command)
    assert sys.modules["probe_command"].COLLECTING is False
    assert gc.isenabled()
    monkeypatch.delitem(sys.modules, "probe_command")


@pytest.mark.parametrize("group", [cli.main, routercli.router], ids=["reconciler", "router"])
def test_every_lazy_command_loads_under_its_own_name(group: click.Group) -> None:
    """A wrong module path, attribute or name in a group's table fails here, not for a user."""
    context = click.Context(group)
    names = group.list_commands(context)
    assert names == sorted(names)
    for name in names:
        command = group.get_command(context, name)
        assert isinstance(command, click.Command), name
        assert command.name == name


def test_help_lists_every_command_with_its_short_help() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed] == sorted(cli.COMMANDS)
    assert all(len(line.split()) > 1 for line in listed)  # each with its short help


def test_router_top_and_simulate_are_router_commands() -> None:
    for name in ("top", "simulate"):
        result = CliRunner().invoke(cli.main, ["router", name, "--help"])
        assert result.exit_code == 0, result.output
        assert f" router {name} [OPTIONS]" in result.output


def test_a_table_entry_that_is_not_a_command_names_itself() -> None:
    group = lazygroup.LazyGroup(lazy_subcommands={"broken": "reconciler.cli.main.COMMANDS"})
    message = "'broken': reconciler.cli.main.COMMANDS is not a click command"
    with pytest.raises(TypeError, match=re.escape(message)):
        group.get_command(click.Context(group), "broken")


def test_a_one_shot_command_runs_without_the_cycle_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`validate`, `render`, `diff`, `plan` and `apply` run with automatic garbage collection
    off (`common.one_shot`), and turn it back on however they end (here: exit 1 on an
    invalid repo), for whatever runs after them in the same interpreter."""
    from reconciler.model import repo

    collecting: list[bool] = []
    load = repo.load

    def recording_load(*args: object, **kwargs: object) -> repo.Loaded:
        collecting.append(gc.isenabled())
        return load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(repo, "load", recording_load)
    (tmp_path / "bad.yaml").write_text("kind: [unclosed\n")
    assert gc.isenabled()
    result = CliRunner().invoke(cli.main, ["validate", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert collecting == [False]  # while the command loaded the repo
    assert gc.isenabled()


@pytest.mark.parametrize("command", [[], ["diff"], ["router", "simulate"], ["cluster", "up"]])
def test_h_is_help_for_every_command(command: list[str]) -> None:
    result = CliRunner().invoke(cli.main, [*command, "-h"], prog_name="reconciler")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: reconciler {' '.join(command)}".rstrip() + " ")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("terminal", "no_color", "wanted"), [
    (True, None, True), (True, "1", False), (True, "", True), (False, None, False),
])  # fmt: skip
def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, no_color: str | None, wanted: bool
) -> None:
    monkeypatch.setattr(sys, "stdout", _Terminal() if terminal else io.StringIO())
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert common.colour_wanted() is wanted
