"""`reconciler preflight`: the repo's documented prerequisites checked against the live cluster.

A thin command at the edge: it loads and validates the repo (`repo`), lists the cluster's Nodes
and Pods (`kube`, the only network access), hands them to the pure rules in `preflight` and
prints the findings. Registered on the main group by `cli`.

Exit codes: 0 when there is no error (warnings allowed); 1 with errors, including a cluster
whose nodes or pods cannot be listed; 2 on a usage error (bad path, kubeconfig or context) or an
invalid repo, whose problems are printed like `reconciler validate` prints them.
"""

from __future__ import annotations

import sys

import click

from reconciler import kube, objects, source
from reconciler.cli import common, connection, decryptkeys
from reconciler.engine import preflight as rules
from reconciler.model import repo


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@common.kube_options
@common.output_option(
    "text",
    "json",
    "yaml",
    help="json / yaml: the findings as a list (severity, subject, message, where).",
)
@decryptkeys.option
def preflight(
    path: str,
    kubeconfig: str | None,
    context: str | None,
    output_format: str,
    decryption_key: str | None,
) -> None:
    """Check the prerequisites of the repo at PATH against the live cluster's nodes.

    inferenceRouterHA needs 3 ready worker nodes, production (HTTPS inference) 4 CPU and 14 GB,
    GPU instance types a node with the GPUs, every nodeSelector a node, every job's and
    deployment's pods room on the nodes it may use (allocatable less what is requested there);
    LoadBalancer is a warning.
    Exit 0 without errors (warnings allowed), 1 with errors, 2 on a usage error or invalid repo.
    """
    loaded = repo.load(decryptkeys.snapshot(source.DirectorySnapshot(path), decryption_key))
    for problem in loaded.problems:
        click.echo(str(problem), err=True)
    if not loaded.valid:
        count = len(loaded.errors)
        click.echo(f"{count} problem{'s' if count != 1 else ''}: fix the repo first", err=True)
        sys.exit(2)
    declared = loaded.repo
    demands = [
        rules.demand(workload, extension, declared.instance_types)
        for workload in [*declared.jobs.values(), *declared.deployments.values()]
        if (extension := declared.extension_for(workload)) is not None
    ]
    cluster = connection.connect(kubeconfig, context)
    try:
        nodes = kube.list_objects(cluster, "v1", "Node", "")
        pods = kube.list_objects(cluster, "v1", "Pod", "") if demands else []
    except kube.KubeError as err:
        click.echo(f"error: cannot list the cluster's nodes and pods: {err}", err=True)
        sys.exit(1)
    finally:
        cluster.api.close()  # type: ignore[no-untyped-call]  # the client is untyped
    findings = rules.check(declared.extensions, declared.instance_types, nodes, demands, pods)
    if output_format != "text":
        common.print_data([f.as_json() for f in findings], output_format)
    else:
        for finding in findings:
            click.echo(str(finding))
        click.echo(_verdict(findings, nodes))
    sys.exit(1 if any(f.is_error for f in findings) else 0)


def _verdict(findings: list[rules.Finding], nodes: list[objects.Object]) -> str:
    """`preflight passed on 4 ready worker nodes, 16 CPU / 64 GiB allocatable (1 warning)`, or
    `preflight failed: 2 errors, 1 warning`."""
    errors = sum(1 for f in findings if f.is_error)
    warnings = len(findings) - errors
    warned = f"{warnings} warning{'s' if warnings != 1 else ''}"
    if errors:
        failed = f"{errors} error{'s' if errors != 1 else ''}"
        return f"preflight failed: {failed}" + (f", {warned}" if warnings else "")
    return f"preflight passed on {rules.summary(nodes)}" + (f" ({warned})" if warnings else "")
