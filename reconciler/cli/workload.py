"""`reconciler deployment ...`, `reconciler endpoint ...` and `reconciler job ...`: the repo's
workloads on the live cluster.

Thin commands over `workloadstatus` (what the cluster says), `auth` (key material), `logstream`
(their pods' logs: `job logs`, `deployment logs`) and `kube`.
Keys are never printed: `regen-key` says which key it replaced and where it lives.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from reconciler import kube, objects, source
from reconciler.cli import common, connection, decryptkeys, logstream
from reconciler.engine import podlogs, workloadstatus
from reconciler.model import endpoints, repo, workloads
from reconciler.render import auth, workloadobjects

F = TypeVar("F", bound=Callable[..., Any])
W = TypeVar("W", workloads.Deployment, endpoints.Endpoint)


def _cluster_options(command: F) -> F:
    """PATH, the manifests repo (default: the current folder), then --kubeconfig/--context."""
    command = common.kube_options(command)
    path = click.Path(exists=True, file_okay=True, dir_okay=True)
    return click.argument("repo_path", metavar="[PATH]", default=".", type=path)(command)


def _load_valid(path: str) -> repo.Repo:
    # SOPS-encrypted files decrypt with the key in $SOPS_AGE_KEY_FILE / $SOPS_AGE_KEY.
    loaded = repo.load(decryptkeys.snapshot(source.DirectorySnapshot(path), None))
    if not loaded.valid:
        for problem in loaded.errors:
            click.echo(str(problem), err=True)
        click.echo(f"{len(loaded.errors)} problems: fix the repo first", err=True)
        sys.exit(1)
    return loaded.repo


def _namespace_of(declared: repo.Repo, workload: Any) -> str:
    extension = declared.extension_for(workload)
    assert extension is not None, "a valid repo has an extension for every workload"
    return extension.release_namespace


@click.group()
def deployment() -> None:
    """Model deployments of the repo on the live cluster."""


def _key_option(command: F) -> F:
    choice = click.Choice(["primary", "secondary"])
    return click.option("--key", "which", type=choice, required=True)(command)


def _keyed(kind: str, declared: Mapping[str, W], name: str, repo_path: str) -> W:
    """The deployment or endpoint (`kind`) `name` of the repo, which must use key auth."""
    target = common.lookup(declared, name, kind, f"declared in {repo_path}")
    if target.auth_mode != "key":
        raise click.UsageError(f"{kind} {name!r} uses auth_mode {target.auth_mode}, not key")
    return target


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
    declared = _load_valid(repo_path)
    target = _keyed("deployment", declared.deployments, name, repo_path)
    served_by = declared.extension_for(target)
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
    declared = _load_valid(repo_path)
    target = _keyed("endpoint", declared.endpoints, name, repo_path)
    served_by = declared.extension_for_endpoint(target)
    assert served_by is not None, "a valid repo has an extension for every endpoint"
    fresh = auth.new_endpoint_secret(target, served_by.release_namespace, served_by.name)
    _regenerate(connection.connect(kubeconfig, context), fresh, which, f"endpoint {name}")


@deployment.command("status")
@common.output_option("table", "json", "yaml")
@_cluster_options
def deployment_status(
    output_format: str, repo_path: str, kubeconfig: str | None, context: str | None
) -> None:
    """Replicas, ready pods of all its pods, who scales each model deployment and, when one is
    not ready, why (its pod's cause: unschedulable, image pull, crash loop); exit 1 if an HPA
    targets one."""
    declared = _load_valid(repo_path)
    cluster = connection.connect(kubeconfig, context)
    states = []
    autoscalers: dict[str, list[Any]] = {}
    pods: dict[str, list[Any]] = {}
    for name, target in sorted(declared.deployments.items()):
        namespace = _namespace_of(declared, target)
        if namespace not in autoscalers:
            autoscalers[namespace] = kube.list_objects(
                cluster, "autoscaling/v2", "HorizontalPodAutoscaler", namespace
            )
            pods[namespace] = kube.list_objects(cluster, "v1", "Pod", namespace)
        ref = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
        live = kube.get(cluster, ref)
        states.append(
            workloadstatus.deployment_state(name, live, autoscalers[namespace], pods[namespace])
        )
    if output_format != "table":
        rows = [
            {"name": s.name, "replicas": s.replicas, "ready": s.ready, "pods": s.pods,
             "updated": s.updated, "scaledBy": list(s.scaled_by), "problem": s.problem,
             "cause": s.cause and s.cause.as_json()}
            for s in states
        ]  # fmt: skip
        common.print_data(rows, output_format)
    else:
        header = f"{'NAME':20} {'REPLICAS':>8} {'READY':>5} {'UPDATED':>7}  {'SCALED BY':16}"
        click.echo(f"{header} CAUSE")
        for state in states:
            replicas = "-" if state.replicas is None else str(state.replicas)
            scaled_by = ",".join(state.scaled_by) or "-"
            cause = state.cause.text() if state.cause else "-"
            click.echo(f"{state.name:20} {replicas:>8} {state.ready_text:>5} "
                       f"{state.updated:>7}  {scaled_by:16} {cause}")  # fmt: skip
        for state in states:
            if state.problem:
                click.echo(f"error: {state.problem}", err=True)
    sys.exit(1 if any(s.problem for s in states) else 0)


@click.group()
def job() -> None:
    """Jobs of the repo on the live cluster."""


@job.command("status")
@common.output_option("table", "json", "yaml")
@_cluster_options
def job_status(
    output_format: str, repo_path: str, kubeconfig: str | None, context: str | None
) -> None:
    """The state of each job: absent, pending, unschedulable, running, succeeded, failed,
    not-run (nothing ran its command: its pod is on a kwok node, or the volcano it waits for
    is) or unverified (the Job says it succeeded, with no pod left to show an exit 0); the
    detail names its pod's cause (the scheduler's reason, an image pull error, an exit code)."""
    declared = _load_valid(repo_path)
    cluster = connection.connect(kubeconfig, context)
    nodes: dict[str, objects.Object | None] = {}
    states = [
        _job_state(cluster, declared, name, target, nodes)
        for name, target in sorted(declared.jobs.items())
    ]
    if output_format != "table":
        rows = [
            {"name": s.name, "state": s.state, "detail": s.message(),
             "cause": s.cause and s.cause.as_json()}
            for s in states
        ]  # fmt: skip
        common.print_data(rows, output_format)
        return
    click.echo(f"{'NAME':24} {'STATE':13} DETAIL")
    for state in states:
        click.echo(f"{state.name:24} {state.state:13} {state.message()}")


def _job_ref(declared: repo.Repo, name: str, target: Any) -> objects.Object:
    """The Job the render makes of job `name`: a volcano Job when its extension installs
    volcano, else a batch/v1 Job."""
    extension = declared.extension_for(target)
    volcano = bool(extension and extension.settings["installVolcano"])
    api_version = workloadstatus.VOLCANO_JOB_API if volcano else "batch/v1"
    return {"apiVersion": api_version, "kind": "Job",
            "metadata": {"name": name, "namespace": _namespace_of(declared, target)}}  # fmt: skip


def _job_state(
    cluster: kube.Cluster,
    declared: repo.Repo,
    name: str,
    target: Any,
    nodes: dict[str, objects.Object | None],
) -> workloadstatus.JobState:
    """What `job status` says of job `name` (`nodes`: the Nodes read so far, by name)."""
    ref = _job_ref(declared, name, target)
    namespace = ref["metadata"]["namespace"]
    volcano = ref["apiVersion"] == workloadstatus.VOLCANO_JOB_API
    live = kube.get(cluster, ref)
    pods = kube.list_objects(cluster, "v1", "Pod", namespace, _job_selector(name))
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
            nodes[node] = logstream.node_or_none(cluster, node)
    known = {n: node for n, node in nodes.items() if node is not None}
    return workloadstatus.job_state(
        name, live, pods, nodes=known, pod_groups=pod_groups, volcano_pods=volcano_pods
    )


def _job_selector(name: str) -> str:
    # The label the render puts on a job's pods, a batch Job's and a volcano Job's alike.
    return f"{workloadobjects.JOB_LABEL}={name}"


@job.command("logs")
@click.argument("name")
@logstream.log_options
@_cluster_options
def job_logs(
    name: str,
    follow: bool,
    tail: int,
    container: str | None,
    previous: bool,
    pod: str | None,
    repo_path: str,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Print the output of job NAME's pod (`az ml job stream`); `-f` follows it until the
    job is over (a failed pod's retry is followed in turn). Several pods (retries,
    instance_count) are printed oldest first, each line prefixed [pod/POD/CONTAINER]. Exit 1
    when there is nothing to read (said why: no pod yet, unschedulable, on a simulated node), 2
    when the API server cannot be reached, 130 on Ctrl-C."""
    options = logstream.options_of(follow, tail, container, previous, pod)
    declared = _load_valid(repo_path)
    target = common.lookup(declared.jobs, name, "job", f"in {repo_path}")
    namespace = _namespace_of(declared, target)
    cluster = connection.connect(kubeconfig, context)
    with logstream.api_errors():
        ref = _job_ref(declared, name, target)
        if kube.get(cluster, ref) is None:
            logstream.fail(
                f"job {name} is not on the cluster (no {ref['kind']} {namespace}/{name}): "
                "apply the repo first"
            )

        def no_pod() -> tuple[str, bool]:
            state = _job_state(cluster, declared, name, target, {})
            detail = f" ({state.message()})" if state.message() else ""
            if state.state not in ("pending", "running"):
                return f"job {name} has no pod: it is {state.state}{detail}", False
            events = kube.list_objects(cluster, "v1", "Event", namespace)
            failed = podlogs.creation_failure(events, "Job", [name])
            if failed is not None:
                # The controller retries (a quota may grow): -f waits, saying why.
                return f"job {name} has no pod: its Job cannot create one: {failed}", True
            return f"job {name} has no pod yet: it is {state.state}{detail}", True

        def goes_on() -> bool:
            # A pod that failed is followed by the Job's retry, until its backoff limit.
            return _job_state(cluster, declared, name, target, {}).state in ("pending", "running")

        logstream.show(
            cluster,
            namespace,
            _job_selector(name),
            workloadobjects.JOB_CONTAINER,
            options,
            no_pod,
            always_prefix=False,
            goes_on=goes_on,
        )


@deployment.command("logs")
@click.argument("name")
@logstream.log_options
@_cluster_options
def deployment_logs(
    name: str,
    follow: bool,
    tail: int,
    container: str | None,
    previous: bool,
    pod: str | None,
    repo_path: str,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Print the model server's log of every replica of deployment NAME, each line prefixed
    [pod/POD/CONTAINER] as `kubectl logs -l ... --prefix` does (`az ml online-deployment
    get-logs`); --pod reads one replica, --previous a crashed container's last run. Exit 1 when
    there is nothing to read (said why), 2 when the API server cannot be reached, 130 on
    Ctrl-C."""
    options = logstream.options_of(follow, tail, container, previous, pod)
    declared = _load_valid(repo_path)
    target = common.lookup(declared.deployments, name, "deployment", f"in {repo_path}")
    namespace = _namespace_of(declared, target)
    cluster = connection.connect(kubeconfig, context)
    with logstream.api_errors():
        ref = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
        selector = f"{workloadobjects.DEPLOYMENT_LABEL}={name}"

        def no_pod() -> tuple[str, bool]:
            live = kube.get(cluster, ref)
            if live is None:
                return (
                    f"deployment {name} is not on the cluster (no Deployment {namespace}/{name}): "
                    "apply the repo first",
                    False,
                )
            wanted = (live.get("spec") or {}).get("replicas", 1)
            if not wanted:
                return f"deployment {name} is scaled to 0 replicas: no pod", False
            # Its ReplicaSets carry its pod labels; they are what fails to create pods.
            sets = kube.list_objects(cluster, "apps/v1", "ReplicaSet", namespace, selector)
            events = kube.list_objects(cluster, "v1", "Event", namespace)
            names = [s["metadata"]["name"] for s in sets]
            failed = podlogs.creation_failure(events, "ReplicaSet", names)
            if failed is not None:
                return (
                    f"deployment {name} has no pod: its ReplicaSet cannot create one: {failed}",
                    True,
                )
            return f"deployment {name} has no pod yet ({wanted} replicas wanted)", True

        logstream.show(
            cluster,
            namespace,
            selector,
            workloadobjects.DEPLOYMENT_CONTAINER,
            options,
            no_pod,
            always_prefix=True,
        )
