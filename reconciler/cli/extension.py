"""`reconciler extension ...`: the cloud CLI's lifecycle verbs for the Extensions of a repo.

`create`, `update` and `delete` take the options people know from `az k8s-extension` (`--config
key=value`, `--config-protected key=value`, `--cluster-type`, `--release-namespace`; the name is
the argument NAME and the repo PATH, as in every command) and edit the manifests repo instead of
calling a cloud API. Each verb is the same four steps: find the Extension document by name (in
any file, among several documents), edit its text with the pure `extensionedit`, then hand the
changed file to `repochange`, which loads and validates the repo as it would be after the edit
and only then writes the one file atomically and commits it, alone, when the repo is in a git
work tree. An edit that would add a problem to the repo is not written at all.

This module holds the commands; `repochange` is the one place that writes manifests and makes
commits. Protected values are never printed: every message that could hold one is redacted.
`show` and `list` read the cluster (the extensions' `ExtensionStatus` records); `delete
--from-cluster` also removes what the extension owns from the cluster (`reconcile`).

Exit codes: 0 done (or nothing to change), 1 the edit cannot be made or would make the repo
invalid (nothing written), 2 a usage error on the command line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import click

from reconciler import kube, source
from reconciler.cli import common, connection, repochange
from reconciler.cli import reconcile as reconcilecli
from reconciler.engine import reconcile, record
from reconciler.model import extensionedit, extensions, problems, yamledit

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_FOLDER = "extensions"


# --- the commands -------------------------------------------------------------------------


@click.group()
def extension() -> None:
    """Extensions of the repo: create, update and delete them like `az k8s-extension`."""


def _assignments(protected: bool) -> Callable[..., list[extensionedit.Assignment]]:
    def parse(
        _ctx: click.Context, _param: click.Parameter, values: Sequence[str]
    ) -> list[extensionedit.Assignment]:
        try:
            return [extensionedit.parse_assignment(value, protected) for value in values]
        except extensionedit.EditError as err:
            raise click.BadParameter(str(err)) from None

    return parse


def _repo_options(command: F) -> F:
    """NAME, PATH (the manifests repo, default: the current folder) and --commit/--no-commit,
    shared by every verb that edits the repo."""
    command = click.option(
        "--commit/--no-commit",
        default=True,
        show_default=True,
        help="Commit the changed file (alone) when PATH is in a git work tree.",
    )(command)
    command = click.argument(
        "repo_path",
        metavar="[PATH]",
        default=".",
        type=click.Path(exists=True, file_okay=False, dir_okay=True),
    )(command)
    return click.argument("name")(command)


def _settings_options(command: F) -> F:
    """--config and --config-protected, as the cloud CLI spells them."""
    command = click.option(
        "--config-protected",
        "protected",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_assignments(protected=True),
        help="A protected setting (spec.configProtected); never printed. Repeatable.",
    )(command)
    return click.option(
        "--config",
        "config",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_assignments(protected=False),
        help="A setting (spec.config): true/false become booleans, the rest strings. Repeatable.",
    )(command)


@extension.command()
@_repo_options
@_settings_options
@click.option(
    "--cluster-type",
    type=click.Choice([extensions.MANAGED, extensions.CONNECTED]),
    default=extensions.MANAGED,
    show_default=True,
)
@click.option("--release-namespace", default=extensions.DEFAULT_NAMESPACE, show_default=True)
@click.option(
    "--file",
    "file",
    help=f"Where to write it, relative to PATH [default: {DEFAULT_FOLDER}/NAME.yaml]; "
    "an existing file gets it as one more document.",
)
def create(
    name: str,
    repo_path: str,
    commit: bool,
    config: list[extensionedit.Assignment],
    protected: list[extensionedit.Assignment],
    cluster_type: str,
    release_namespace: str,
    file: str | None,
) -> None:
    """Add a new Extension manifest named NAME to the repo.

    Refused when the repo already declares an extension of that name, or when the repo would
    not be valid with it (the problems are printed, nothing is written).
    """
    snapshot = source.DirectorySnapshot(repo_path)
    target = _target_file(name, file)
    for path, found in _declared(snapshot, name):
        repochange.fail(
            [
                f"{snapshot.display(path)}:{found.line}: metadata.name: extension {name!r} "
                "already exists (change it with: reconciler extension update)"
            ]
        )
    document = extensionedit.new_manifest(name, cluster_type, release_namespace, config, protected)
    existing = repochange.read(snapshot, target) if snapshot.exists(target) else ""
    change = repochange.Change(
        target,
        yamledit.add_document(existing, document),
        "create",
        name,
        secrets=frozenset(str(a.value) for a in protected),
    )
    applied = repochange.apply_change(snapshot, change, commit)
    click.echo(f"created extension {name} in {snapshot.display(target)}{_committed(applied)}")


@extension.command()
@_repo_options
@_settings_options
@click.option(
    "--remove-config",
    "remove",
    multiple=True,
    metavar="KEY",
    help="Remove a setting (from spec.config or spec.configProtected). Repeatable.",
)
def update(
    name: str,
    repo_path: str,
    commit: bool,
    config: list[extensionedit.Assignment],
    protected: list[extensionedit.Assignment],
    remove: tuple[str, ...],
) -> None:
    """Change the settings of extension NAME in place, keeping the file's comments and layout.

    A key already set (matched case-insensitively, older names included) gets the new value
    where it stands; a new key goes after the section's last one.
    """
    if not (config or protected or remove):
        raise click.UsageError(
            "nothing to update: give --config, --config-protected or --remove-config"
        )
    snapshot = source.DirectorySnapshot(repo_path)
    path = _find(snapshot, name)
    try:
        edited = extensionedit.update(
            repochange.read(snapshot, path), name, config, protected, remove
        )
    except extensionedit.EditError as err:
        repochange.fail([f"{snapshot.display(path)}: {err}"])
    if not edited.changed:
        click.echo(f"extension {name} in {snapshot.display(path)} already has these settings")
        return
    change = repochange.Change(path, edited.text, "update", name, edited.summary, edited.secrets)
    applied = repochange.apply_change(snapshot, change, commit)
    what = edited.summary
    click.echo(f"updated extension {name} in {snapshot.display(path)}: {what}{_committed(applied)}")


@extension.command()
@_repo_options
@click.option(
    "--from-cluster",
    is_flag=True,
    help="Also remove every object the extension owns from the cluster, now.",
)
@common.kube_options
def delete(
    name: str,
    repo_path: str,
    commit: bool,
    from_cluster: bool,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Remove extension NAME from the repo: its document, or its file when it was the only one.

    Refused while workloads in the repo still run on it (the repo would be invalid). With
    --from-cluster, every object the extension owns (by its inventory, only what still carries
    its labels) is deleted from the cluster in reverse apply order, then its record; without
    it, the next `reconciler apply --allow-mass-prune` of the repo does that.
    """
    snapshot = source.DirectorySnapshot(repo_path)
    path = _find(snapshot, name)
    try:
        deleted = extensionedit.delete(repochange.read(snapshot, path), name)
    except extensionedit.EditError as err:
        repochange.fail([f"{snapshot.display(path)}: {err}"])
    change = repochange.Change(path, deleted.text, "delete", name, secrets=deleted.secrets)
    applied = repochange.apply_change(snapshot, change, commit)
    shown = snapshot.display(path)
    what = f"removed {shown}" if deleted.text is None else f"removed its document from {shown}"
    click.echo(f"deleted extension {name}: {what}{_committed(applied)}")
    if from_cluster:
        cluster = connection.connect(kubeconfig, context)
        failures = reconcile.delete_extension(cluster, name, reconcilecli.echo)
        if failures:
            repochange.fail(failures)
        click.echo(f"removed extension {name} and every object it owned from the cluster")


@extension.command("list")
@common.kube_options
@common.output_option("table", "wide", "json", "yaml")
def list_extensions(kubeconfig: str | None, context: str | None, output_format: str) -> None:
    """Every extension installed on the cluster, with its provisioningState."""
    summaries = _summaries(kubeconfig, context)
    if output_format in ("table", "wide"):
        click.echo(reconcilecli.table(summaries, wide=output_format == "wide"))
    else:
        common.print_data(summaries, output_format)


@extension.command()
@click.argument("name")
@common.kube_options
@common.output_option("json", "yaml")
def show(name: str, kubeconfig: str | None, context: str | None, output_format: str) -> None:
    """Extension NAME on the cluster: name, provisioningState, revisions, reasons."""
    summaries = {s["name"]: s for s in _summaries(kubeconfig, context)}
    if name not in summaries:
        _no_record(name, summaries)
    common.print_data(summaries[name], output_format)


def _no_record(name: str, known: Iterable[str]) -> None:
    """Exit 1: the cluster has no record of extension `name` (naming the nearest one)."""
    hint = problems.did_you_mean(name, known)
    repochange.fail([f"the cluster has no extension named {name!r}{hint}"])


# `suspend` / `resume` write spec.suspend with a field manager of their own, so the
# reconciler's server-side apply of the record (which never sets it) leaves it alone.
SUSPEND_FIELD_MANAGER = "mlext-reconciler-suspend"


@extension.command()
@click.argument("name")
@common.kube_options
def suspend(name: str, kubeconfig: str | None, context: str | None) -> None:
    """Stop reconciling extension NAME: no apply, prune or drift correction (by `apply`,
    `sync` or the controller) until `resume`. What it runs keeps running."""
    _set_suspended(name, True, kubeconfig, context)
    click.echo(f"extension {name}: suspended")


@extension.command()
@click.argument("name")
@common.kube_options
def resume(name: str, kubeconfig: str | None, context: str | None) -> None:
    """Reconcile extension NAME again (the controller catches up on its next tick)."""
    _set_suspended(name, False, kubeconfig, context)
    click.echo(f"extension {name}: resumed")


def _set_suspended(name: str, value: bool, kubeconfig: str | None, context: str | None) -> None:
    cluster = connection.connect(kubeconfig, context)
    try:
        if kube.get(cluster, record.ref(name)) is None:
            known = kube.list_objects(cluster, record.API_VERSION, record.KIND, "")
            _no_record(name, [r["metadata"]["name"] for r in known])
        patch = {"spec": {"suspend": True if value else None}}  # None removes the field
        kube.merge_patch(cluster, record.ref(name), patch, field_manager=SUSPEND_FIELD_MANAGER)
    except kube.KubeError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)


def _summaries(kubeconfig: str | None, context: str | None) -> list[dict[str, Any]]:
    cluster = connection.connect(kubeconfig, context)
    try:
        return [record.summary(r) for r in reconcile.refreshed_records(cluster)]
    except kube.KubeError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)


# --- helpers --------------------------------------------------------------------------------


def _declared(
    snapshot: source.Snapshot, name: str | None
) -> Iterator[tuple[str, extensionedit.Located]]:
    """Every Extension document of the repo (named `name` when given), with its file. A file
    the snapshot does not read (a symlink out of the repo, a FIFO) declares none: validating
    the edited repo reports it."""
    for path in snapshot.yaml_files():
        try:
            text = snapshot.read_text(path)
        except source.RefusedFile:
            continue
        for found in extensionedit.locate(text, name):
            yield path, found


def _find(snapshot: source.DirectorySnapshot, name: str) -> str:
    """The one file that declares extension `name`; exit 1 when none or several do."""
    found = list(_declared(snapshot, name))
    if not found:
        known = sorted({located.name for _, located in _declared(snapshot, None)})
        hint = problems.did_you_mean(name, known)
        if known and not hint:
            hint = f" (known: {', '.join(known)})"
        repochange.fail([f"no extension named {name!r} in {snapshot.display('')}{hint}"])
    if len(found) > 1:
        places = ", ".join(f"{snapshot.display(path)}:{at.line}" for path, at in found)
        repochange.fail(
            [f"extension {name!r} is declared more than once ({places}): fix the repo first"]
        )
    return found[0][0]


def _target_file(name: str, file: str | None) -> str:
    """The snapshot path `create` writes to: --file, or extensions/NAME.yaml."""
    if file is None:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise click.BadParameter("must be a DNS label (a-z, 0-9, '-')", param_hint="NAME")
        file = f"{DEFAULT_FOLDER}/{name}.yaml"
    path = source.normalize(file)
    if not path or not path.endswith(source.YAML_SUFFIXES):
        raise click.BadParameter(
            "must be a .yaml or .yml file inside the repo, relative to --path", param_hint="--file"
        )
    return path


def _committed(applied: repochange.Applied) -> str:
    return f" (commit {applied.commit[:7]})" if applied.commit else ""
