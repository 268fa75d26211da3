"""`reconciler install`: print the in-cluster controller's own manifests.

A thin command over the pure `install` module (imported as `installation`: the command itself
is named `install`): it turns options into `install.Options` and prints the objects as one YAML
stream (or a JSON List), ready for `kubectl apply --server-side -f -` or
`reconciler cluster kubectl -- apply --server-side -f -`. Talks to no cluster. Registered on the
main group by `cli`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reconciler import objects
from reconciler.cli import common
from reconciler.gitops import chart
from reconciler.gitops import install as installation

# Namespaces and extension names become object names and parts of role names: DNS-1123 labels
# (an Extension's name at most 40 characters, as its schema says, to leave room for suffixes).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_Callback = Callable[[click.Context, click.Parameter, Any], Any]


def _dns_labels(max_length: int) -> _Callback:
    def check(_ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        for name in (value,) if isinstance(value, str) else value:
            if len(name) > max_length or not _DNS_LABEL.fullmatch(name):
                raise click.BadParameter(
                    f"{name!r} is not a DNS-1123 label of at most {max_length} characters "
                    "(lowercase letters, digits and '-', starting and ending with a letter or "
                    "digit)",
                    param=param,
                )
        return value

    return check


@click.command()
@click.option(
    "--repo",
    "repo_url",
    default="",
    help=(
        "The manifests repo the controller follows: a git URL (https, ssh, or git:// as "
        "`git daemon` serves, e.g. from the host of the local plane). Required, except with "
        "--chart."
    ),
)
@click.option(
    "--branch", default=installation.DEFAULT_BRANCH, show_default=True, help="Branch to follow."
)
@click.argument("repo_path", metavar="[PATH]", default=installation.DEFAULT_PATH)
@click.option(
    "--interval",
    default=installation.DEFAULT_INTERVAL,
    show_default=True,
    help="How often the controller fetches the repo.",
)
@click.option(
    "--namespace",
    "-n",
    default=installation.DEFAULT_NAMESPACE,
    show_default=True,
    callback=_dns_labels(63),
    help="Namespace the controller runs in (created by the manifests).",
)
@click.option(
    "--image",
    default=None,
    help=f"Controller image [default: {installation.default_image()}].",
)
@click.option(
    "--git-secret",
    default=installation.DEFAULT_GIT_SECRET,
    show_default=True,
    help=(
        "Secret in --namespace with the git credentials, mounted at "
        + installation.GIT_CREDENTIALS_DIR
        + ": keys username/password or bearerToken (HTTPS), identity/known_hosts (SSH), "
        "ca.crt. Only referenced: create it yourself; without it the repo must be public."
    ),
)
@click.option(
    "--decryption-secret",
    default="",
    help=(
        "Secret in --namespace whose *.agekey keys hold the age identities for the repo's "
        "SOPS-encrypted files (as Flux's decryption secretRef); the controller may get only it."
    ),
)
@click.option(
    "--extension",
    "extension_names",
    multiple=True,
    default=installation.DEFAULT_EXTENSIONS,
    show_default=True,
    callback=_dns_labels(40),
    help=(
        "Name of an extension the repo declares (repeat for several): the controller may "
        "create and bind only the RBAC roles these extensions' components render."
    ),
)
@click.option(
    "--adopt",
    is_flag=True,
    help=(
        "The controller takes over the repo's extensions that another source owns (`apply "
        "--adopt`), at each start until its first complete reconcile; install again without "
        "it once that is done."
    ),
)
@click.option(
    "--chart",
    "chart_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=(
        "Write the controller's Helm chart into this folder instead of printing manifests: "
        "the same objects, the options as its values (these options their defaults), "
        "installed into the release's namespace (so no --namespace)."
    ),
)
@click.option(
    "--notifications-secret",
    default="",
    help=(
        "Secret in --namespace whose notifications.yaml key is the controller's "
        "--notifications file (its other keys: the files its providers read); mounted."
    ),
)
@common.output_option(
    "yaml",
    "json",
    help="yaml: a multi-document stream; json: one List like kubectl -o json.",
)
def install(
    repo_url: str,
    branch: str,
    repo_path: str,
    interval: str,
    namespace: str,
    image: str | None,
    git_secret: str,
    decryption_secret: str,
    extension_names: tuple[str, ...],
    adopt: bool,
    notifications_secret: str,
    chart_dir: Path | None,
    output_format: str,
) -> None:
    """Print the manifests that run `reconciler controller` in the cluster, following the
    manifests folder PATH of the repo (default: its root).

    Namespace, ServiceAccount, the ExtensionStatus CRD, least-privilege RBAC computed from
    what the extension renders, a Deployment of 2 replicas with leader election, probes and
    resources, and a metrics Service. Apply them with
    `reconciler install --repo URL | kubectl apply --server-side -f -`. With --chart, write the
    Helm chart that makes the same objects instead (charts/mlext-reconciler is that chart).
    """
    if chart_dir is not None and namespace != installation.DEFAULT_NAMESPACE:
        raise click.UsageError("--chart: the chart installs into the release's namespace")
    if chart_dir is None and not repo_url:
        raise click.UsageError("Missing option '--repo'.")
    options = installation.Options(
        repo=repo_url,
        namespace=namespace,
        image=image or "",
        git_secret=git_secret,
        decryption_secret=decryption_secret,
        branch=branch,
        path=repo_path,
        interval=interval,
        extensions=extension_names,
        adopt=adopt,
        notifications_secret=notifications_secret,
    )
    if chart_dir is not None:
        for name, text in chart.files(options).items():
            (chart_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (chart_dir / name).write_text(text, encoding="utf-8")
            click.echo(chart_dir / name)
        return
    objs = installation.manifests(options)
    text = objects.to_json(objs) if output_format == "json" else objects.to_yaml(objs)
    click.echo(text, nl=False)
