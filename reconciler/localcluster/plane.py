"""Start, watch and stop a local control plane: the process and network I/O side.

:func:`start` lays out a state folder (certificates, kubeconfigs, etcd data, logs), starts etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok on free loopback ports, each in
its own session (process group), creates the simulated nodes and waits until the plane can run
pods. It records a ``state.json`` after every process it starts, so :func:`stop` and
:func:`status` work from another process (``reconciler cluster down`` after ``up``) and a failed
start is cleaned up. :func:`stop` sends SIGTERM to each process group, then SIGKILL, and checks
that every process is gone: no orphans.

To test how clients cope with a crash, :func:`kill` SIGKILLs one component and :func:`relaunch`
starts it again from the command line recorded in the state (same ports and data, so etcd keeps
every object) and waits until it is healthy; :func:`restart` does both. :func:`revive` relaunches
every component of a recorded plane that died, so that ``reconciler cluster up`` brings a crashed
plane back with its objects, certificates and kubeconfigs instead of replacing it by an empty one.

The flags, paths and objects come from :mod:`reconciler.localcluster.config`; this module only
runs them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from reconciler.localcluster import build, hostdocker, hostroutes, realnodeconfig
from reconciler.localcluster.config import (
    COMPONENTS,
    KUBECONFIG_IDENTITIES,
    SERVICE_IP,
    Layout,
    NodeSpec,
    PlaneState,
    Ports,
    apiserver_url,
    component_commands,
    component_ports,
    health_url,
    kubeconfig,
    node_manifest,
    stop_order,
)
from reconciler.localcluster.pki import ADMIN, write_pki

Progress = Callable[[str], None]

READY_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0


class PlaneError(RuntimeError):
    """The plane could not be started (or a component died); the message says why."""


def default_state_dir() -> Path:
    """``$RECONCILER_CLUSTER_DIR``, else ``<repo>/.cache/localcluster`` (ignored by git)."""
    env = os.environ.get("RECONCILER_CLUSTER_DIR")
    if env:
        return Path(env).resolve()
    return build.repo_root() / ".cache" / "localcluster"


# ---------------------------------------------------------------------------------------------
# processes


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int, state_dir: Path) -> bool:
    """True while ``pid`` is alive and is one of this plane's components (not a reused PID).

    Every component's command line names a file under the state folder; a zombie has an empty
    command line and so counts as gone.
    """
    marker = str(state_dir)
    return any(marker in arg for arg in _proc_cmdline(pid))


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


# Popen objects of processes this Python process started, so stop() can reap them (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_SPAWNER: concurrent.futures.ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> concurrent.futures.ThreadPoolExecutor:
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="plane-spawn")
        return _SPAWNER


def _spawn(cmd: list[str], log: Path, die_with_parent: bool) -> subprocess.Popen[bytes]:
    if die_with_parent and threading.current_thread() is not threading.main_thread():
        # The kernel sends the parent-death signal when the *thread* that forked the child ends,
        # not the process: a component started from a short-lived thread (a threading.Timer
        # that relaunches the API server) would be killed as soon as that thread returns. Such
        # starts go through one worker thread that lives as long as this process.
        return _spawner().submit(_spawn_here, cmd, log, die_with_parent).result()
    return _spawn_here(cmd, log, die_with_parent)


def _spawn_here(cmd: list[str], log: Path, die_with_parent: bool) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session and process group: signals reach only it
            preexec_fn=_die_with_parent if die_with_parent else None,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _CHILDREN.pop(pid, None)


def _alive(pid: int, state_dir: Path) -> bool:
    _reap(pid)
    return is_ours(pid, state_dir)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # each component leads its own process group (start_new_session)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _stop_wave(names: list[str], pids: dict[str, int], state_dir: Path, timeout: float) -> None:
    live = {n: pids[n] for n in names if _alive(pids[n], state_dir)}
    for pid in live.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = {n: p for n, p in live.items() if _alive(p, state_dir)}
        if not live:
            return
        time.sleep(0.1)
    for pid in live.values():
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p, state_dir) for p in live.values()):
        time.sleep(0.1)
    still = [n for n, p in live.items() if _alive(p, state_dir)]
    if still:
        raise PlaneError(f"could not stop {', '.join(still)} (pids {[live[n] for n in still]})")


# ---------------------------------------------------------------------------------------------
# state


def read_state(state_dir: Path) -> PlaneState | None:
    """The recorded state of the plane in ``state_dir``, or None if there is none."""
    try:
        return PlaneState.from_json(Layout(state_dir).state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise PlaneError(f"unreadable state file in {state_dir}: {exc}") from exc


def _write_state(layout: Layout, state: PlaneState) -> None:
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, layout.state_file)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    alive: bool
    rss: int


@dataclass(frozen=True)
class Status:
    """What ``reconciler cluster status`` shows."""

    state: PlaneState | None
    components: list[ComponentStatus]
    api_ready: bool

    @property
    def running(self) -> bool:
        return (
            self.state is not None
            and self.api_ready
            and {c.name for c in self.components if c.alive} >= set(COMPONENTS)
        )

    @property
    def rss_total(self) -> int:
        return sum(c.rss for c in self.components)


# ---------------------------------------------------------------------------------------------
# HTTP to the plane (stdlib only: the plane's own checks need no Kubernetes client)


def _ssl_context(layout: Layout, client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(layout.pki.ca_cert))
    if client_cert:
        ctx.load_cert_chain(layout.pki.client_cert(ADMIN), layout.pki.client_key(ADMIN))
    return ctx


def _insecure_context() -> ssl.SSLContext:
    # The controller manager and scheduler serve /healthz with a self-signed certificate made
    # at start; only liveness is read from them, on loopback.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _request(
    url: str,
    ctx: ssl.SSLContext | None,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return 0, b""


def _api(
    layout: Layout, ports: Ports, path: str, method: str = "GET", body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    code, raw = _request(apiserver_url(ports) + path, _ssl_context(layout), method, body)
    try:
        return code, json.loads(raw) if raw else None
    except ValueError:
        return code, raw.decode(errors="replace")


def api(
    state: PlaneState, path: str, method: str = "GET", body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """One request to a running plane's API server as its admin: (HTTP status, decoded body);
    status 0 when the server did not answer."""
    return _api(Layout(Path(state.state_dir)), _ports_of(state), path, method, body)


def _healthy(component: str, layout: Layout, ports: Ports) -> bool:
    url = health_url(component, ports)
    if url is None:
        return True
    if component == "etcd":
        code, body = _request(url, None)
        return code == 200 and b'"true"' in body
    ctx = _ssl_context(layout) if component == "kube-apiserver" else _insecure_context()
    code, body = _request(url, ctx)
    return code == 200 and body.strip() == b"ok"


def _ports_of(state: PlaneState) -> Ports:
    # The state's ports also name those of components started beside the plane's own
    # (`volcano-*`): a Ports has the plane's only.
    known = {f.name for f in fields(Ports)}
    return Ports(**{name: port for name, port in state.ports.items() if name in known})


def status(state_dir: Path | None = None) -> Status:
    """The recorded plane's processes, their memory and whether the API server is ready."""
    state_dir = state_dir or default_state_dir()
    state = read_state(state_dir)
    if state is None:
        return Status(None, [], False)
    comps = [
        ComponentStatus(name, pid, _alive(pid, state_dir), rss_bytes(pid))
        for name, pid in state.pids.items()
    ]
    ready = False
    if any(c.name == "kube-apiserver" and c.alive for c in comps):
        ready = _healthy("kube-apiserver", Layout(state_dir), _ports_of(state))
    return Status(state, comps, ready)


# ---------------------------------------------------------------------------------------------
# start / stop


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together while choosing)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _write_kubeconfigs(layout: Layout, server: str) -> None:
    pki = layout.pki
    ca = pki.ca_cert.read_bytes()
    layout.kubeconfigs.mkdir(parents=True, exist_ok=True)
    for name, who in KUBECONFIG_IDENTITIES.items():
        doc = kubeconfig(
            server,
            ca,
            pki.client_cert(who).read_bytes(),
            pki.client_key(who).read_bytes(),
            who.user,
        )
        path = layout.admin_kubeconfig if name == "admin" else layout.kubeconfig(name)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)


def _clear(layout: Layout) -> None:
    for path in layout.owned_paths():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _wait(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    procs: dict[str, subprocess.Popen[bytes]],
    layout: Layout,
) -> None:
    """Poll ``check`` until it holds; fail early, with the log, if a component exits."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None:
                raise PlaneError(
                    f"{name} exited with code {code} while waiting for {what}; "
                    f"last lines of {layout.log(name)}:\n{_log_tail(layout.log(name))}"
                )
        if check():
            return
        if time.monotonic() >= deadline:
            logs = "\n".join(f"--- {layout.log(n)}:\n{_log_tail(layout.log(n), 10)}" for n in procs)
            raise PlaneError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _nodes_ready(layout: Layout, ports: Ports, names: list[str]) -> bool:
    code, body = _api(layout, ports, "/api/v1/nodes?labelSelector=type%3Dkwok")
    if code != 200 or not isinstance(body, dict):
        return False
    ready = set()
    for item in body.get("items", []):
        conds = item.get("status", {}).get("conditions", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            ready.add(item["metadata"]["name"])
    return set(names) <= ready


def _health_check(component: str, layout: Layout, ports: Ports) -> Callable[[], bool]:
    return lambda: _healthy(component, layout, ports)


def _default_sa_exists(layout: Layout, ports: Ports) -> bool:
    code, _ = _api(layout, ports, "/api/v1/namespaces/default/serviceaccounts/default")
    return code == 200


def _create_nodes(layout: Layout, ports: Ports, nodes: list[NodeSpec]) -> None:
    for spec in nodes:
        code, body = _api(layout, ports, "/api/v1/nodes", "POST", node_manifest(spec))
        if code not in (201, 409):
            raise PlaneError(f"creating node {spec.name} failed: HTTP {code}: {body}")


def start(
    binaries: build.Binaries,
    nodes: list[NodeSpec],
    state_dir: Path | None = None,
    *,
    die_with_parent: bool = False,
    timeout: float = READY_TIMEOUT,
    progress: Progress | None = None,
) -> PlaneState:
    """Start a plane in ``state_dir`` and return once pods can be scheduled and run.

    ``die_with_parent`` makes the kernel kill the components if this Python process dies (for
    a test session); without it they outlive the caller (``reconciler cluster up``).
    Raises PlaneError with the failing component's log; nothing is left running then.
    """
    state_dir = (state_dir or default_state_dir()).resolve()
    layout = Layout(state_dir)
    existing = status(state_dir)
    if any(c.alive for c in existing.components):
        raise PlaneError(f"a plane is already running in {state_dir}; stop it first")
    state_dir.mkdir(parents=True, exist_ok=True)
    remove_real_nodes(state_dir)  # left by a start that crashed before it could stop them
    _clear(layout)
    say = progress or (lambda _line: None)

    started = time.monotonic()
    ports = Ports.from_list(free_ports(5))
    server = apiserver_url(ports)
    write_pki(layout.pki, SERVICE_IP)
    _write_kubeconfigs(layout, server)
    layout.etcd_data.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = PlaneState(
        version=binaries.version,
        state_dir=str(state_dir),
        kubeconfig=str(layout.admin_kubeconfig),
        server=server,
        binary=str(binaries.binary),
        ports={k: int(v) for k, v in vars(ports).items()},
        started_at=time.time(),
        die_with_parent=die_with_parent,
    )
    commands = component_commands(binaries.binary, layout, ports, binaries.kwok_stages)
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def launch(name: str) -> None:
        procs[name] = _spawn(commands[name], layout.log(name), die_with_parent)
        state.pids[name] = procs[name].pid
        state.commands[name] = commands[name]
        _write_state(layout, state)

    try:
        say(f"starting etcd and kube-apiserver {binaries.version} on {server}")
        launch("etcd")
        _wait("etcd", lambda: _healthy("etcd", layout, ports), 60, procs, layout)
        launch("kube-apiserver")
        _wait(
            "kube-apiserver /readyz",
            lambda: _healthy("kube-apiserver", layout, ports),
            timeout,
            procs,
            layout,
        )
        say("starting kube-controller-manager, kube-scheduler and kwok")
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            launch(name)
        _create_nodes(layout, ports, nodes)
        state.nodes = [n.name for n in nodes]
        _write_state(layout, state)
        say(f"waiting for {len(nodes)} simulated nodes to be Ready")
        names = state.nodes
        _wait("nodes Ready", lambda: _nodes_ready(layout, ports, names), timeout, procs, layout)
        for name in ("kube-controller-manager", "kube-scheduler"):
            _wait(f"{name} /healthz", _health_check(name, layout, ports), timeout, procs, layout)
        _wait(
            "the default service account (controller manager at work)",
            lambda: _default_sa_exists(layout, ports),
            timeout,
            procs,
            layout,
        )
    except BaseException:
        with contextlib.suppress(PlaneError):
            stop(state_dir)
        raise
    state.ready_seconds = round(time.monotonic() - started, 2)
    _write_state(layout, state)
    return state


def launch_extra(state_dir: Path, name: str, command: list[str]) -> int:
    """Start ``command`` as the plane's component ``name`` beside the core ones (volcano's
    processes): its own process group, its log in ``logs/<name>.log``,
    dying with this process if the plane does, recorded in the state so that :func:`stop`
    ends it and :func:`status` lists it. The command line must name a file under the state
    folder (how :func:`is_ours` tells the process from a reused PID). Returns its PID."""
    layout = Layout(state_dir)
    state = read_state(state_dir)
    if state is None:
        raise PlaneError(f"no plane is recorded in {state_dir}")
    proc = _spawn(command, layout.log(name), state.die_with_parent)
    state.pids[name] = proc.pid
    state.commands[name] = command
    _write_state(layout, state)
    return proc.pid


def remove_real_nodes(state_dir: Path) -> bool:
    """Remove the plane's real nodes (``realnode``): the host's routes to their pods, their
    containers, the API server's forwarder, the plane's Docker network and the nodes' files.
    True if there were any.

    Docker is asked only when the plane made real nodes (their folder exists), so stopping a
    plane of simulated nodes never waits on Docker.
    """
    folder = realnodeconfig.realnodes_dir(state_dir)
    if not folder.exists():
        return False
    if hostdocker.daemon_ready():
        pid = realnodeconfig.plane_id(state_dir)
        # First: the network's claim says which routes are the plane's.
        hostroutes.remove_plane_routes(pid)
        hostdocker.remove_labelled(f"{realnodeconfig.PLANE_LABEL}={pid}")
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        raise PlaneError(f"could not remove the real nodes' files in {folder}")
    return True


def stop(state_dir: Path | None = None, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the plane recorded in ``state_dir``; True if anything was running. Idempotent.

    The state folder stays (logs are useful after a failure) but the state file goes, so
    ``status`` then says nothing is running.
    """
    state_dir = (state_dir or default_state_dir()).resolve()
    had_nodes = remove_real_nodes(state_dir)
    state = read_state(state_dir)
    if state is None:
        return had_nodes
    was_running = any(_alive(pid, state_dir) for pid in state.pids.values())
    for wave in stop_order(state.pids):
        _stop_wave(wave, state.pids, state_dir, timeout)
    for pid in state.pids.values():
        proc = _CHILDREN.pop(pid, None)
        if proc is not None:
            proc.wait(timeout=5)
    with contextlib.suppress(FileNotFoundError):
        Layout(state_dir).state_file.unlink()
    return was_running


# ---------------------------------------------------------------------------------------------
# one component: crash (kill) and start again (relaunch)


def _recorded(component: str, state_dir: Path | None) -> tuple[Path, PlaneState]:
    state_dir = (state_dir or default_state_dir()).resolve()
    if component not in COMPONENTS:
        raise PlaneError(f"unknown component {component!r} (one of {', '.join(COMPONENTS)})")
    state = read_state(state_dir)
    if state is None:
        raise PlaneError(f"no plane is recorded in {state_dir}")
    if component not in state.pids:
        raise PlaneError(f"the plane in {state_dir} has not started {component}")
    if component not in state.commands:
        raise PlaneError(
            f"the plane in {state_dir} did not record its command lines (an older start); "
            "stop it and start it again"
        )
    return state_dir, state


def kill(component: str, state_dir: Path | None = None) -> int:
    """Kill one running component with SIGKILL, as a crash would; return the killed PID.

    Returns once the process is gone. The rest of the plane keeps running, the state file
    keeps the component's command line, and :func:`relaunch` starts it again. Raises
    PlaneError if there is no plane or the component is not running.
    """
    state_dir, state = _recorded(component, state_dir)
    pid = state.pids[component]
    if not _alive(pid, state_dir):
        raise PlaneError(f"{component} (pid {pid}) is not running in {state_dir}")
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(pid, state_dir):
        if time.monotonic() >= deadline:
            raise PlaneError(f"{component} (pid {pid}) survived SIGKILL")
        time.sleep(0.05)
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        proc.wait(timeout=5)  # reaped already by _alive; this only settles the Popen object
    return pid


def _release_node_leases(layout: Layout, state: PlaneState) -> None:
    """Delete the simulated nodes' leases the dead kwok held. A new kwok has a new identity and
    leaves a lease alone until it expires (40 s): until then it moves no pod of that node. Best
    effort: with the API server down there is nothing to release now."""
    ports = _ports_of(state)
    for node in state.nodes:
        lease = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
        with contextlib.suppress(OSError):  # no certificates to reach the server with
            _api(layout, ports, lease, "DELETE")


def relaunch(
    component: str,
    state_dir: Path | None = None,
    *,
    timeout: float = READY_TIMEOUT,
) -> int:
    """Start a killed (or crashed) component again and return its new PID once it is healthy.

    It gets the very command line it had (same ports, certificates, data folder: etcd finds its
    data again) and, as at :func:`start`, dies with this process if the plane was started with
    ``die_with_parent``. Healthy means: etcd ``/health``, kube-apiserver ``/readyz``, the
    controller manager's and scheduler's ``/healthz``; kwok has no health endpoint and counts
    as healthy once started. Its log continues in ``logs/<component>.log``. Raises PlaneError,
    with the log, if the component is still running, exits or does not get healthy in time.
    """
    state_dir, state = _recorded(component, state_dir)
    old = state.pids[component]
    if _alive(old, state_dir):
        raise PlaneError(f"{component} is still running (pid {old}); kill it first")
    layout = Layout(state_dir)
    if component == "kwok":
        _release_node_leases(layout, state)
    log = layout.log(component)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"\n--- relaunched by reconciler.localcluster at {time.ctime()} ---\n")
    proc = _spawn(state.commands[component], log, state.die_with_parent)
    state.pids[component] = proc.pid
    _write_state(layout, state)
    ports = _ports_of(state)
    try:
        _wait(
            f"{component} to be healthy again",
            _health_check(component, layout, ports),
            timeout,
            {component: proc},
            layout,
        )
    except BaseException:
        if proc.poll() is None:  # timed out (or interrupted): leave nothing half-started
            _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        _CHILDREN.pop(proc.pid, None)
        raise
    return proc.pid


def restart(
    component: str,
    state_dir: Path | None = None,
    *,
    timeout: float = READY_TIMEOUT,
) -> int:
    """Crash one component (:func:`kill`) and :func:`relaunch` it; return its new PID."""
    kill(component, state_dir)
    return relaunch(component, state_dir, timeout=timeout)


@dataclass(frozen=True)
class Revived:
    """A component :func:`revive` started again: its new PID, its ports, how long it took."""

    component: str
    pid: int
    ports: tuple[int, ...]
    seconds: float

    def message(self) -> str:
        where = ""
        if self.ports:
            plural = "s" if len(self.ports) > 1 else ""
            where = f" on port{plural} {', '.join(str(p) for p in self.ports)}"
        return (
            f"{self.component} was not running: restarted{where} with its data "
            f"(healthy in {self.seconds:.1f} s)"
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the components bind (Go sets SO_REUSEADDR): the connections a killed process left
        # in TIME_WAIT do not keep its port, a listening process does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def revive(
    state_dir: Path | None = None,
    *,
    timeout: float = READY_TIMEOUT,
    progress: Progress | None = None,
) -> list[Revived]:
    """Bring the plane recorded in ``state_dir`` back after components of it died (a crash, a
    kill, a reboot): :func:`relaunch` each dead one, in start order, on its recorded ports with
    its data (etcd's objects, the certificates, the kubeconfigs stay as they are), wait until
    the live ones are healthy and the nodes Ready again; return what was restarted.

    Never discards anything: when the plane cannot come back (a port taken by another process,
    a start that never finished, a component that will not get healthy) it raises PlaneError
    saying why and leaves the state folder as it is; ``stop`` then ``start`` make a new plane.
    """
    state_dir = (state_dir or default_state_dir()).resolve()
    state = read_state(state_dir)
    if state is None:
        raise PlaneError(f"no plane is recorded in {state_dir}")
    discard = f"`reconciler cluster down --state-dir {state_dir}` discards it"
    unrecorded = [name for name in COMPONENTS if name not in state.commands]
    if unrecorded or state.ready_seconds is None:
        raise PlaneError(
            f"the plane in {state_dir} is still starting, or its start was interrupted "
            f"(never ready); {discard}"
        )
    layout, ports = Layout(state_dir), _ports_of(state)
    say = progress or (lambda _line: None)
    revived: list[Revived] = []
    for name in COMPONENTS:
        pid = state.pids[name]
        if _alive(pid, state_dir):
            try:
                check = _health_check(name, layout, ports)
                _wait(f"{name} (pid {pid}) to be healthy", check, timeout, {}, layout)
            except PlaneError as err:
                raise PlaneError(
                    f"{err}; it runs but does not answer its health check; last lines of "
                    f"{layout.log(name)}:\n{_log_tail(layout.log(name))}\n{discard}"
                ) from err
            continue
        own = component_ports(name, ports)
        taken = [port for port in own if not _port_free(port)]
        if taken:
            raise PlaneError(
                f"{name} is not running and another process listens on its port "
                f"{', '.join(map(str, taken))}; the plane's data in {state_dir} is kept: free "
                f"the port and run `reconciler cluster up` again, or {discard}"
            )
        say(f"{name} (pid {pid}) is not running: starting it again from its data")
        began = time.monotonic()
        new = relaunch(name, state_dir, timeout=timeout)
        revived.append(Revived(name, new, tuple(own), time.monotonic() - began))
    if revived:
        say(f"waiting for {len(state.nodes)} simulated nodes to be Ready")
        _wait("nodes Ready", lambda: _nodes_ready(layout, ports, state.nodes), timeout, {}, layout)
    return revived


@contextlib.contextmanager
def running(
    nodes: list[NodeSpec],
    state_dir: Path,
    progress: Progress | None = None,
) -> Iterator[PlaneState]:
    """Build if needed, start a plane tied to this process, yield its state, stop it."""
    binaries = build.ensure_built(progress)
    state = start(binaries, nodes, state_dir, die_with_parent=True, progress=progress)
    try:
        yield state
    finally:
        stop(state_dir)
