"""`reconciler deployment ...`, `reconciler endpoint ...` and `reconciler job ...`: the repo's
workloads on the live cluster.

Thin commands over `workloadstatus` (what the cluster says), `auth` (key material) and `kube`.
Keys are never printed: `regen-key` says which key it replaced and where it lives.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconciler import kube, objects, source
from reconciler.cli import common, connection, decryptkeys
from reconciler.engine import workloadstatus
from reconciler.model import repo
from reconciler.render import auth, workloadobjects

F = TypeVar("F", bound=Callable[..., Any])


def _cluster_options(command: F) -> F:
    command = common.kube_options(command)
    path = click.Path(exists=True, file_okay=True, dir_okay=True)
    return click.option("--path", "repo_path", default=".", type=path, help="the manifests repo")(
        command
    )


def _load_valid(path: str) -> repo.Repo:
    # SOPS-encrypted files decrypt with the key in $SOPS_AGE_KEY_FILE / $SOPS_AGE_KEY.
    loaded = repo.load(decryptkeys.snapshot(source.DirectorySnapshot(path), None))
    if not loaded.valid:
        for problem in loaded.errors:
            click.echo(str(problem), err=True)
        click.echo(f"{len(loaded.errors)} problems: fix the repo first", err=True)
        sys.exit(1)
    return loaded.repo


def _namespace_of(loaded: repo.Repo, workload: Any) -> str:
    extension = loaded.extension_for(workload)
    assert extension is not None, "a valid repo has an extension for every workload"
    return extension.release_namespace


@click.group()
def deployment() -> None:
    """Model deployments of the repo on the live cluster."""


def _key_option(command: F) -> F:
    choice = click.Choice(["primary", "secondary"])
    return click.option("--key", "which", type=choice, required=True)(command)


def _regenerate(cluster: kube.Cluster, fresh: objects.Object | None, which: str, what: str) -> None:
    """Replace one key of the Secret `fresh` stands for (created whole when absent)."""
    assert fresh is not None, "key mode always has a Secret"
    where = f"Secret {fresh['metadata']['namespace']}/{fresh['metadata']['name']}"
    if kube.create_if_absent(cluster, fresh):
        click.echo(f"created both keys of {what} ({where})")
        return
    kube.merge_patch(cluster, fresh, {"data": auth.regenerated(which)})
    click.echo(f"regenerated the {which} key of {what} ({where})")


@deployment.command("regen-key")
@click.argument("name")
@_key_option
@_cluster_options
def regen_key(
    name: str, which: str, repo_path: str, kubeconfig: str | None, context: str | None
) -> None:
    """Replace the primary or the secondary key of deployment NAME (the other keeps working)."""
    loaded = _load_valid(repo_path)
    if name not in loaded.deployments:
        raise click.UsageError(f"no deployment named {name!r} in {repo_path}")
    target = loaded.deployments[name]
    if target.auth_mode != "key":
        raise click.UsageError(f"deployment {name!r} uses auth_mode {target.auth_mode}, not key")
    served_by = loaded.extension_for(target)
    assert served_by is not None, "a valid repo has an extension for every deployment"
    fresh = auth.new_secret(target, served_by.release_namespace, served_by.name)
    _regenerate(connection.connect(kubeconfig, context), fresh, which, f"deployment {name}")


@click.group()
def endpoint() -> None:
    """Online endpoints of the repo on the live cluster."""


@endpoint.command("regen-key")
@click.argument("name")
@_key_option
@_cluster_options
def endpoint_regen_key(
    name: str, which: str, repo_path: str, kubeconfig: str | None, context: str | None
) -> None:
    """Replace the primary or the secondary key of endpoint NAME (the other keeps working).
    An endpoint of a deployment's own name (no endpoint declared) has the deployment's keys:
    `reconciler deployment regen-key`."""
    loaded = _load_valid(repo_path)
    if name not in loaded.endpoints:
        raise click.UsageError(f"no endpoint named {name!r} declared in {repo_path}")
    target = loaded.endpoints[name]
    if target.auth_mode != "key":
        raise click.UsageError(f"endpoint {name!r} uses auth_mode {target.auth_mode}, not key")
    served_by = loaded.extension_for_endpoint(target)
    assert served_by is not None, "a valid repo has an extension for every endpoint"
    fresh = auth.new_endpoint_secret(target, served_by.release_namespace, served_by.name)
    _regenerate(connection.connect(kubeconfig, context), fresh, which, f"endpoint {name}")


@deployment.command("status")
@common.output_option("table", "json")
@_cluster_options
def deployment_status(
    output_format: str, repo_path: str, kubeconfig: str | None, context: str | None
) -> None:
    """Replicas, readiness and who scales each model deployment; exit 1 if an HPA targets one."""
    loaded = _load_valid(repo_path)
    cluster = connection.connect(kubeconfig, context)
    states = []
    autoscalers: dict[str, list[Any]] = {}
    for name, target in sorted(loaded.deployments.items()):
        namespace = _namespace_of(loaded, target)
        if namespace not in autoscalers:
            autoscalers[namespace] = kube.list_objects(
                cluster, "autoscaling/v2", "HorizontalPodAutoscaler", namespace
            )
        ref = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
        states.append(
            workloadstatus.deployment_state(name, kube.get(cluster, ref), autoscalers[namespace])
        )
    if output_format == "json":
        rows = [
            {"name": s.name, "replicas": s.replicas, "ready": s.ready,
             "scaledBy": list(s.scaled_by), "problem": s.problem}
            for s in states
        ]  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(f"{'NAME':20} {'REPLICAS':>8} {'READY':>5}  SCALED BY")
        for state in states:
            replicas = "-" if state.replicas is None else str(state.replicas)
            scaled_by = ",".join(state.scaled_by) or "-"
            click.echo(f"{state.name:20} {replicas:>8} {state.ready:>5}  {scaled_by}")
        for state in states:
            if state.problem:
                click.echo(f"error: {state.problem}", err=True)
    sys.exit(1 if any(s.problem for s in states) else 0)


@click.group()
def job() -> None:
    """Jobs of the repo on the live cluster."""


@job.command("status")
@_cluster_options
def job_status(repo_path: str, kubeconfig: str | None, context: str | None) -> None:
    """The state of each job: absent, pending, unschedulable, running, succeeded, failed,
    not-run (nothing ran its command: its pod is on a kwok node, or the volcano it waits for
    is) or unverified (the Job says it succeeded, with no pod left to show an exit 0)."""
    loaded = _load_valid(repo_path)
    cluster = connection.connect(kubeconfig, context)
    nodes: dict[str, objects.Object | None] = {}
    click.echo(f"{'NAME':24} {'STATE':13} DETAIL")
    for name, target in sorted(loaded.jobs.items()):
        namespace = _namespace_of(loaded, target)
        extension = loaded.extension_for(target)
        volcano = bool(extension and extension.settings["installVolcano"])
        api_version = workloadstatus.VOLCANO_JOB_API if volcano else "batch/v1"
        ref = {"apiVersion": api_version, "kind": "Job",
               "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
        live = kube.get(cluster, ref)
        pods = kube.list_objects(
            cluster, "v1", "Pod", namespace, f"{workloadobjects.JOB_LABEL}={name}"
        )
        pod_groups: list[objects.Object] = []
        volcano_pods: list[objects.Object] = []
        if volcano and live is not None:
            pod_groups = kube.list_objects(
                cluster, "scheduling.volcano.sh/v1beta1", "PodGroup", namespace
            )
            components = f"{workloadstatus.VOLCANO_CONTROLLERS},{workloadstatus.VOLCANO_SCHEDULER}"
            volcano_pods = kube.list_objects(
                cluster, "v1", "Pod", namespace, f"{objects.COMPONENT_LABEL} in ({components})"
            )
        for pod in [*pods, *volcano_pods]:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node not in nodes:
                nodes[node] = _node(cluster, node)
        known = {n: node for n, node in nodes.items() if node is not None}
        state = workloadstatus.job_state(
            name, live, pods, nodes=known, pod_groups=pod_groups, volcano_pods=volcano_pods
        )
        click.echo(f"{state.name:24} {state.state:13} {state.detail}")


def _node(cluster: kube.Cluster, name: str) -> objects.Object | None:
    """The Node, or None when it is gone or not readable (the rule then goes by the pods'
    container statuses alone)."""
    try:
        return kube.get(cluster, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    except kube.KubeError as err:
        if err.status != 403:
            raise
        return None
