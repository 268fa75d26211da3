"""Build volcano's scheduler and controller manager and run them as processes of a plane.

The build: ``go build`` of both programs in ``controlplane/volcano/`` (a module of the
project's own that requires ``volcano.sh/volcano`` with volcano's replace directives), static,
into ``<repo>/.cache/realnode/volcano-<version>/`` with a digest stamp of that module's go.mod
and go.sum and a file lock (``nodebuild.cached_build``).

The run: :func:`start` gives the plane a client certificate and kubeconfig for volcano, writes
the scheduler's configuration and starts both programs (``plane.launch_extra``), so the plane's
stop ends them and its status lists them. They start before the extension's apply creates
volcano's CRDs: each waits until they are served, and is started again when it exits
(``volcanoconfig.supervised``). :func:`wait_healthy` waits until both answer /healthz: once
the CRDs are served (and, for the scheduler, the default Queue exists).

Command lines and files come from ``volcanoconfig``; this module only runs them.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from reconciler.localcluster import build, nodebuild, plane
from reconciler.localcluster import volcanoconfig as vc
from reconciler.localcluster.build import BuildError, Progress
from reconciler.localcluster.config import Layout, PlaneState, kubeconfig
from reconciler.localcluster.pki import issue_client_cert


class VolcanoError(RuntimeError):
    """volcano could not be started or did not get healthy; the message says why."""


def source_dir(root: Path | None = None) -> Path:
    return build.source_dir(root) / vc.SOURCE_SUBDIR


def pinned_version(root: Path | None = None) -> str:
    return vc.pinned_version((source_dir(root) / "go.mod").read_text())


def ensure_built(progress: Progress | None = None, root: Path | None = None) -> Path:
    """vc-scheduler and vc-controller-manager at the pinned version; returns their folder."""
    src = source_dir(root)
    go_mod, go_sum = (src / "go.mod").read_bytes(), (src / "go.sum").read_bytes()
    version = vc.pinned_version(go_mod.decode())
    out_dir = nodebuild.cache_root(root) / f"volcano-{version}"
    digest = build.source_digest(
        [("go.mod", go_mod), ("go.sum", go_sum), ("packages", " ".join(vc.PACKAGES).encode())]
    )

    def make(tmp: Path) -> None:
        go = build.find_go()
        env = build.build_env(dict(os.environ))
        build._say(progress, "resolving volcano's Go packages (downloads modules the first time)")
        total = build.count_packages(go, src, list(vc.PACKAGES), env)
        build._say(
            progress,
            f"building volcano {version} scheduler and controller manager ({total} Go packages; "
            "first time on a machine: about 4 minutes on 2 cores)",
        )
        build.run_go_build(vc.build_command(go, tmp, version), src, env, total, progress)
        for built, name in vc.BINARIES.items():
            os.replace(tmp / built, tmp / name)

    nodebuild.cached_build(
        out_dir, digest, list(vc.BINARIES.values()), make, f"volcano {version}", progress
    )
    return out_dir


def _write_files(state: PlaneState) -> Layout:
    layout = Layout(Path(state.state_dir))
    vc.folder(layout).mkdir(parents=True, exist_ok=True)
    vc.conf_path(layout).write_text(vc.SCHEDULER_CONF)
    cert, key = issue_client_cert(layout.pki, vc.IDENTITY)
    doc = kubeconfig(state.server, layout.pki.ca_cert.read_bytes(), cert, key, vc.IDENTITY.user)
    path = vc.kubeconfig_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return layout


def recorded_ports(state: PlaneState) -> dict[str, int] | None:
    """volcano's ports as recorded in the plane's state (None: volcano was not started)."""
    ports = {name: state.ports.get(f"volcano-{name}") for name in vc.PORT_NAMES}
    if any(p is None for p in ports.values()):
        return None
    return {k: int(v) for k, v in ports.items() if v is not None}


def start(state: PlaneState, progress: Progress | None = None) -> dict[str, int]:
    """Build volcano if needed and start its two processes for the plane; returns their PIDs.

    Running ones are kept. Does not wait for them to be healthy (see :func:`wait_healthy`).
    """
    say = progress or (lambda _line: None)
    bin_dir = ensure_built(progress)
    state_dir = Path(state.state_dir)
    current = plane.read_state(state_dir) or state
    status = {c.name: c for c in plane.status(state_dir).components}
    if all(name in status and status[name].alive for name in vc.COMPONENTS):
        return {name: status[name].pid for name in vc.COMPONENTS}
    layout = _write_files(current)
    ports = recorded_ports(current)
    if ports is None:
        ports = dict(zip(vc.PORT_NAMES, plane.free_ports(len(vc.PORT_NAMES)), strict=True))
        current.ports.update({f"volcano-{k}": v for k, v in ports.items()})
        plane._write_state(layout, current)
    say(f"starting volcano {pinned_version()} (scheduler and controller manager)")
    pids = {}
    kubectl = [current.binary, build.KUBECTL]
    for name, command in vc.commands(bin_dir, layout, ports, kubectl).items():
        if name in status and status[name].alive:
            pids[name] = status[name].pid
            continue
        pids[name] = plane.launch_extra(state_dir, name, command)
    return pids


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(state: PlaneState, timeout: float = 120.0) -> float:
    """Wait until both answer /healthz; returns the seconds waited. The scheduler answers only
    once the default Queue exists, so the extension's CRDs must be applied by then."""
    state_dir = Path(state.state_dir)
    current = plane.read_state(state_dir) or state
    ports = recorded_ports(current)
    if ports is None:
        raise VolcanoError(f"volcano was not started on the plane in {state_dir}")
    urls = vc.health_urls(ports)
    began = time.monotonic()
    while True:
        waiting = [name for name, url in urls.items() if not _answers(url)]
        if not waiting:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            layout = Layout(state_dir)
            tails = []
            for name in waiting:
                with contextlib.suppress(OSError):
                    lines = layout.log(name).read_text(errors="replace").splitlines()[-15:]
                    tails.append(f"--- {layout.log(name)}:\n" + "\n".join(lines))
            raise VolcanoError(
                f"{', '.join(waiting)} not healthy after {timeout:.0f} s\n" + "\n".join(tails)
            )
        time.sleep(0.5)


__all__ = ["BuildError", "VolcanoError", "ensure_built", "start", "wait_healthy"]
