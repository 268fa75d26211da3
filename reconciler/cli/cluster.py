"""``reconciler cluster``: start, stop and inspect the local control plane from a shell.

``up`` builds the binaries on first use (progress on stderr), starts the plane in the background,
waits until it is ready and prints ``KUBECONFIG=<path>`` as its last line on stdout, so
``export "$(reconciler cluster up)"`` works. On a plane whose components died it restarts them
from their data (``plane.revive``: same ports, objects, certificates, kubeconfigs) and says so;
only ``down`` discards a plane. Both are idempotent. ``status``
exits 0 when the plane is running and 1 when it is not. ``build`` only builds. ``kubectl`` runs
the kubectl built with the plane (same Kubernetes version) on the plane's admin kubeconfig.

Besides its simulated (kwok) nodes, ``up`` gives the plane real nodes (``--real-nodes``, default 1):
Docker containers running containerd, the kubelet and kube-proxy, where pods that tolerate the
``mlext.io/real-node`` taint run in real containers (``localcluster.realnode``). Where Docker cannot
run, the plane comes up without them and says so. The real nodes get the project's image (built from
the ``Dockerfile``) and the images the manifests name, real where this machine can pull them, else
local stand-ins (``localcluster.localimages``, ``standins``); ``status`` lists them, and the
address at which pods reach the host (where to serve a repo for the in-cluster controller). A
plane with real nodes also runs volcano's scheduler and controller manager as processes of its
own (``localcluster.volcano``), so the volcano Jobs the extension renders run on the real nodes.

The group is registered on the main CLI in ``reconciler/cli.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from reconciler.localcluster import (
    build,
    hostdocker,
    localimages,
    plane,
    realnode,
    standins,
    volcano,
)
from reconciler.localcluster.config import PlaneState, default_nodes
from reconciler.localcluster.realnodeconfig import MAX_REAL_NODES

# Two: each real node offers the scheduler this machine's CPUs (as kind's nodes do), and the
# bundled example's model, router and job pods ask for more than one 2-core machine's 2 CPUs
# (green's second replica stayed Pending on one node).
DEFAULT_REAL_NODES = 2

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
    "--real-nodes",
    default=DEFAULT_REAL_NODES,
    show_default=True,
    envvar="RECONCILER_REAL_NODES",
    type=click.IntRange(min=0, max=MAX_REAL_NODES),
    help="Real nodes: Docker containers running containerd and a kubelet, where pods run in real "
    "containers (only pods tolerating mlext.io/real-node=true:NoExecute). Each offers this "
    "machine's CPUs and memory to the scheduler. Docker and the node's programs are installed "
    "and built on first use; where Docker cannot run, none.",
)
@click.option(
    "--timeout",
    default=plane.READY_TIMEOUT,
    show_default=True,
    type=float,
    help="Seconds to wait for the plane to become ready.",
)
@_STATE_DIR
def up(nodes: int, gpu_nodes: int, real_nodes: int, timeout: float, state_dir: Path | None) -> None:
    """Start the plane in the background (building it first if needed) and wait until ready.

    A plane whose components died (a crash, a reboot) is restarted from its data: same ports,
    objects, certificates and kubeconfig. `down` is what discards a plane."""
    state_dir = (state_dir or plane.default_state_dir()).resolve()
    try:
        current = plane.status(state_dir)
        if current.state is not None:
            _resume(state_dir, current, timeout)
            ok = _start_real_nodes(current.state, real_nodes)
            click.echo(f"KUBECONFIG={current.state.kubeconfig}")
            sys.exit(0 if ok else 1)
        binaries = build.ensure_built(_progress)
        state = plane.start(
            binaries,
            default_nodes(nodes, gpu_nodes),
            state_dir,
            timeout=timeout,
            progress=_progress,
        )
    except (build.BuildError, plane.PlaneError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _progress(
        f"Kubernetes {state.version} ready in {state.ready_seconds}s at {state.server} "
        f"with {len(state.nodes)} simulated nodes; stop it with `reconciler cluster down`"
    )
    ok = _start_real_nodes(state, real_nodes)
    click.echo(f"KUBECONFIG={state.kubeconfig}")
    if not ok:
        sys.exit(1)


def _resume(state_dir: Path, current: plane.Status, timeout: float) -> None:
    """The plane recorded in `state_dir` running again: components that died are restarted
    from their data, never replaced by an empty plane (only `down` discards one)."""
    assert current.state is not None
    if current.running:
        _progress(f"already running ({current.state.server}); nothing to do")
        return
    began = time.monotonic()
    revived = plane.revive(state_dir, timeout=timeout, progress=_progress)
    for component in revived:
        _progress(component.message())
    _progress(
        f"Kubernetes {current.state.version} running again at {current.state.server} "
        f"after {time.monotonic() - began:.1f}s, with the objects it had"
    )


def _start_real_nodes(state: PlaneState, count: int) -> bool:
    """Start the plane's real nodes; False (said on stderr) when they could not start although
    Docker runs. Where Docker cannot run, the plane goes on without them: said, not an error."""
    if count == 0:
        return True
    began = time.monotonic()
    try:
        nodes = realnode.start_nodes(state, count, _progress)
    except hostdocker.DockerUnavailable as exc:
        _progress(
            f"no real nodes: Docker cannot run here ({exc}). The plane has simulated (kwok) "
            "nodes only: pods are scheduled but no container runs"
        )
        return True
    except (build.BuildError, realnode.RealNodeError) as exc:
        click.echo(f"error: the real nodes did not start: {exc}", err=True)
        _progress("the plane runs without real nodes; `reconciler cluster down` stops it")
        return False
    _progress(
        f"{len(nodes)} real node(s) Ready ({', '.join(n.name for n in nodes)}) after "
        f"{time.monotonic() - began:.1f}s; pods tolerating mlext.io/real-node run there"
    )
    provided = _provide_images(state, nodes)
    return _start_volcano(state) and provided


def _start_volcano(state: PlaneState) -> bool:
    """volcano's scheduler and controller manager, built if needed, as processes of the plane;
    False (said on stderr) when they could not start. They serve volcano Jobs once the
    extension's apply has created volcano's CRDs (the scheduler is restarted until then)."""
    began = time.monotonic()
    try:
        volcano.start(state, _progress)
    except (build.BuildError, plane.PlaneError, OSError) as exc:
        click.echo(f"error: volcano did not start: {exc}", err=True)
        return False
    _progress(
        f"volcano {volcano.pinned_version()} (scheduler, controller manager) running after "
        f"{time.monotonic() - began:.1f}s; it runs volcano Jobs on the real nodes once "
        "`reconciler apply` has created its CRDs"
    )
    return True


def _provide_images(state: PlaneState, nodes: list[realnode.RealNode]) -> bool:
    """The project's image and the manifests' images (real where they can be pulled, else
    stand-ins) loaded into the real nodes; False (said on stderr) when that failed."""
    began = time.monotonic()
    try:
        provided = localimages.provide(Path(state.state_dir), nodes, _progress)
    except (build.BuildError, realnode.RealNodeError, hostdocker.DockerUnavailable) as exc:
        click.echo(f"error: the real nodes' images: {exc}", err=True)
        return False
    stood_in = sum(p.standin for p in provided)
    _progress(
        f"{len(provided)} image names on the real nodes ({stood_in} stand-ins, see "
        f"`reconciler cluster status`) after {time.monotonic() - began:.1f}s"
    )
    return True


def _echo_images(state_dir: Path) -> None:
    """The images loaded into the real nodes, the stand-ins said as such."""
    images = localimages.loaded(state_dir)
    click.echo(f"images on the real nodes: {len(images) or '-'}")
    for p in images:
        if p.standin:
            what = standins.RECIPES[p.recipe].what if p.recipe in standins.RECIPES else p.recipe
            click.echo(f"  {p.name}  STAND-IN: {p.local} ({what})")
        else:
            click.echo(f"  {p.name}")


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
    real = realnode.list_nodes(Path(s.state_dir))
    click.echo(f"real nodes: {', '.join(f'{n.name} ({n.container})' for n in real) or '-'}")
    if real:
        # Where a server on the host (a repo served with `git daemon`) is reached from pods.
        click.echo(f"pods reach the host at: {realnode.host_address(Path(s.state_dir)) or '-'}")
        _echo_images(Path(s.state_dir))
    if s.ready_seconds is not None:
        click.echo(f"start to ready: {s.ready_seconds}s")
    for c in st.components:
        state = "up" if c.alive else "DOWN"
        click.echo(f"  {c.name:<24} pid {c.pid:<8} {state:<5} {_mib(c.rss):>9}")
    click.echo(f"  {'total resident memory':<38} {_mib(st.rss_total):>9}")
    if not st.running:
        click.echo("`reconciler cluster up` restarts what is down, with its data", err=True)
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
