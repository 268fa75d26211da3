"""``reconciler cluster``: start, stop and inspect the local control plane from a shell.

``up`` builds the binaries on first use (progress on stderr), starts the plane in the background,
waits until it is ready and prints ``KUBECONFIG=<path>`` as its last line on stdout, so
``export "$(reconciler cluster up)"`` works. ``down`` stops it. Both are idempotent. ``status``
exits 0 when the plane is running and 1 when it is not. ``build`` only builds. ``kubectl`` runs
the kubectl built with the plane (same Kubernetes version) on the plane's admin kubeconfig.

The group is registered on the main CLI in ``reconciler/cli.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import click

from reconciler import kube
from reconciler.localcluster import build, modelserver, plane, podruntime
from reconciler.localcluster.config import default_nodes

_STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="RECONCILER_CLUSTER_DIR",
    help="Folder of the plane's state, certificates and logs [default: .cache/localcluster].",
)


def _progress(line: str) -> None:
    click.echo(f"[cluster] {line}", err=True)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


@click.group()
def cluster() -> None:
    """A real local Kubernetes control plane on loopback (etcd, kube-apiserver,
    kube-controller-manager, kube-scheduler and kwok-simulated nodes)."""


@cluster.command("build")
def build_binaries() -> None:
    """Build (or find cached) control-plane binaries for the pinned Kubernetes version."""
    try:
        binaries = build.ensure_built(_progress)
    except build.BuildError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(str(binaries.binary))


@cluster.command()
@click.option(
    "--nodes",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Simulated CPU nodes (4 CPU, 16Gi).",
)
@click.option(
    "--gpu-nodes",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Simulated GPU nodes (4 CPU, 16Gi, nvidia.com/gpu: 1, accelerator=nvidia).",
)
@click.option(
    "--timeout",
    default=plane.READY_TIMEOUT,
    show_default=True,
    type=float,
    help="Seconds to wait for the plane to become ready.",
)
@_STATE_DIR
def up(nodes: int, gpu_nodes: int, timeout: float, state_dir: Path | None) -> None:
    """Start the plane in the background (building it first if needed) and wait until ready."""
    state_dir = (state_dir or plane.default_state_dir()).resolve()
    try:
        current = plane.status(state_dir)
        if current.running and current.state is not None:
            _start_runtime(state_dir)
            _progress(f"already running ({current.state.server}); nothing to do")
            click.echo(f"KUBECONFIG={current.state.kubeconfig}")
            return
        if current.state is not None:
            _progress("cleaning up a plane that is no longer healthy")
            plane.stop(state_dir)
        binaries = build.ensure_built(_progress)
        state = plane.start(
            binaries,
            default_nodes(nodes, gpu_nodes),
            state_dir,
            timeout=timeout,
            progress=_progress,
        )
        _start_runtime(state_dir)
    except (build.BuildError, plane.PlaneError, modelserver.InstallError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _progress(
        f"Kubernetes {state.version} ready in {state.ready_seconds}s at {state.server} "
        f"with {len(state.nodes)} nodes; stop it with `reconciler cluster down`"
    )
    click.echo(f"KUBECONFIG={state.kubeconfig}")


def _start_runtime(state_dir: Path) -> None:
    modelserver.ensure_installed(_progress)  # here, so that its progress and errors show
    pid = plane.start_runtime(state_dir)
    _progress(
        f"pod runtime (pid {pid}) runs the model and router pods on loopback; "
        f"log {state_dir / 'logs' / (plane.RUNTIME + '.log')}"
    )


@cluster.command("runtime")
@_STATE_DIR
@click.option(
    "--namespace",
    default="",
    help="Run only the pods of this namespace [default: every namespace].",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Pod folders, logs and the pod network file [default: STATE_DIR/runtime].",
)
def runtime(state_dir: Path | None, namespace: str, work_dir: Path | None) -> None:
    """Run this project's pods of the plane (model servers, routers) as local processes, in
    the foreground until SIGTERM; `cluster up` starts one in the background."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    state_dir = (state_dir or plane.default_state_dir()).resolve()
    state = plane.read_state(state_dir)
    if state is None:
        click.echo(f"error: no plane is recorded in {state_dir}", err=True)
        sys.exit(1)
    try:
        server = modelserver.ensure_installed(_progress)
    except modelserver.InstallError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    cluster = kube.connect(state.kubeconfig)
    podruntime.serve(cluster, work_dir or plane.runtime_dir(state_dir), server, namespace)


@cluster.command()
@_STATE_DIR
def down(state_dir: Path | None) -> None:
    """Stop the plane and every process it started. Does nothing if none is running."""
    try:
        stopped = plane.stop(state_dir)
    except plane.PlaneError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo("stopped" if stopped else "no cluster running")


@cluster.command("status")
@_STATE_DIR
def status_cmd(state_dir: Path | None) -> None:
    """Show whether the plane runs, its processes and their memory. Exit 1 if not running."""
    try:
        st = plane.status(state_dir)
    except plane.PlaneError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if st.state is None:
        click.echo("no cluster running")
        sys.exit(1)
    s = st.state
    click.echo(
        f"{'running' if st.running else 'NOT HEALTHY'}: Kubernetes {s.version} at {s.server}"
    )
    click.echo(f"KUBECONFIG={s.kubeconfig}")
    click.echo(f"nodes: {', '.join(s.nodes) or '-'}")
    if s.ready_seconds is not None:
        click.echo(f"start to ready: {s.ready_seconds}s")
    for c in st.components:
        state = "up" if c.alive else "DOWN"
        click.echo(f"  {c.name:<24} pid {c.pid:<8} {state:<5} {_mib(c.rss):>9}")
    click.echo(f"  {'total resident memory':<38} {_mib(st.rss_total):>9}")
    if not st.running:
        sys.exit(1)


@cluster.command(
    "kubectl",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@_STATE_DIR
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(state_dir: Path | None, args: tuple[str, ...]) -> None:
    """Run kubectl ARGS on the running plane, e.g. `reconciler cluster kubectl -- get nodes`.

    The kubectl is the one built into the plane's binary, at the plane's Kubernetes version
    (the machine's kubectl is not used); KUBECONFIG is set to the plane's admin kubeconfig.
    Everything after the first argument (or after `--`) goes to kubectl; the exit code is
    kubectl's.
    """
    try:
        st = plane.status(state_dir)
        if st.state is None:
            click.echo("error: no cluster running (start it: reconciler cluster up)", err=True)
            sys.exit(1)
        binaries = build.ensure_built(_progress)
    except (build.BuildError, plane.PlaneError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    env = {**os.environ, "KUBECONFIG": st.state.kubeconfig}
    try:
        code = subprocess.run(binaries.kubectl(*args), env=env, check=False).returncode
    except KeyboardInterrupt:  # Ctrl-C reached kubectl too (e.g. ending `get --watch`)
        code = 130
    sys.exit(code)
