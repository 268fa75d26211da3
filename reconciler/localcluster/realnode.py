"""Real nodes on the local plane: start them, wait until Ready, load images, list them.

A real node is a Docker container running containerd, the kubelet and kube-proxy at the plane's
Kubernetes version, joined to the plane's API server; its pods are real containers (runc). The
plane keeps its simulated (kwok) nodes for scale; real nodes carry the label and taint
``mlext.io/real-node=true`` so that only pods that tolerate the taint land there.

:func:`start_nodes` makes sure Docker runs (``hostdocker``), builds or finds the programs
(``nodebuild``) and the node image (``nodeimage``), then creates the plane's Docker network, the
forwarder from that network to the API server on loopback, the RBAC bindings and the
``kubernetes`` EndpointSlice, and the node containers, and waits until every node is Ready.
Then it routes the pod network (the host and every node reach every node's pods, ``podnetwork``)
and starts cluster DNS (CoreDNS on the real nodes behind ``kube-dns``, ``clusterdns``), waiting
until it answers. ``plane.stop`` removes all of it (everything carries the plane's Docker label;
``hostroutes`` deletes the host's routes). The shapes and files come from
``realnodeconfig``, ``podnetwork`` and ``clusterdns``; this module only runs them.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.localcluster import (
    clusterdns,
    hostdocker,
    hostroutes,
    nodebuild,
    nodeimage,
    plane,
    podnetwork,
    realplacement,
)
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.config import Layout, PlaneState, kubeconfig
from reconciler.localcluster.pki import ClientIdentity, issue_client_cert

Progress = Callable[[str], None]

READY_TIMEOUT = 180.0
DNS_READY_TIMEOUT = 120.0


class RealNodeError(RuntimeError):
    """A real node could not be started or used; the message says why (with its logs)."""


@dataclass(frozen=True)
class RealNode:
    """One running real node: its Kubernetes name, its container and how long it took."""

    name: str
    container: str
    ready_seconds: float | None = None


def _docker(*args: str, timeout: float | None = 300) -> str:
    try:
        return hostdocker.docker(*args, timeout=timeout).stdout
    except hostdocker.DockerUnavailable as exc:
        raise RealNodeError(str(exc)) from exc


def _inspect(kind: str, name: str) -> list[dict[str, Any]] | None:
    proc = hostdocker.docker(kind, "inspect", name, check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data if isinstance(data, list) else None


def _gateway(pid: str) -> str:
    """The gateway address of the plane's network (Docker's record, else the bridge's address)."""
    info = _inspect("network", rc.network_name(pid))
    if info is None:
        raise RealNodeError(f"the Docker network {rc.network_name(pid)} does not exist")
    gateway = rc.parse_gateway(info)
    if gateway:
        return gateway
    bridge = "br-" + str(info[0]["Id"])[:12]
    proc = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "dev", bridge],
        capture_output=True,
        text=True,
        check=False,
    )
    address = rc.parse_bridge_address(json.loads(proc.stdout or "[]"))
    if address is None:
        raise RealNodeError(f"no gateway address for the Docker network {rc.network_name(pid)}")
    return address


def _ensure_network(pid: str, state_dir: Path) -> tuple[str, ipaddress.IPv4Network]:
    """The plane's network (created with a claim on a free pod range if missing): its gateway
    and the plane's pod range."""
    claimed = hostroutes.claimed_pod_range(pid)
    if claimed is None:
        lock_dir = nodebuild.cache_root()
        lock_dir.mkdir(parents=True, exist_ok=True)
        # Two planes starting at once must not claim the same range: choose and create under
        # one lock for the machine.
        with open(lock_dir / ".pod-ranges.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _inspect("network", rc.network_name(pid)) is not None:
                # Made before planes claimed ranges: a label cannot be added to a network, so
                # the plane's Docker objects go and come back (its nodes with DNS and routes).
                hostdocker.remove_labelled(f"{rc.PLANE_LABEL}={pid}")
            out = _docker(
                "network", "ls", "--filter", f"label={rc.POD_RANGE_LABEL}",
                "--format", f'{{{{.Label "{rc.POD_RANGE_LABEL}"}}}}',
            )  # fmt: skip
            taken = podnetwork.claimed_ranges(out.splitlines())
            taken |= podnetwork.routed_ranges(hostroutes.ip_routes())
            try:
                claimed = podnetwork.choose_plane_range(pid, taken)
            except podnetwork.NoFreePodRange as exc:
                raise RealNodeError(str(exc)) from exc
            _docker(*rc.network_create_args(pid, state_dir, claimed))
    return _gateway(pid), claimed


def _running(container: str) -> bool:
    info = _inspect("container", container)
    return bool(info and info[0].get("State", {}).get("Running"))


def _ensure_forwarder(pid: str, state_dir: Path, image: str, gateway: str, port: int) -> None:
    name = rc.forwarder_name(pid)
    if _running(name):
        return
    if _inspect("container", name) is not None:
        _docker("rm", "-f", name)
    _docker(*rc.forwarder_run_args(pid, state_dir, image, gateway, port))


def _create(state: PlaneState, path: str, obj: dict[str, Any]) -> None:
    """Create `obj`, or bring the one an earlier start made up to date (a `cluster up` on a
    running plane starts its real nodes' objects again)."""
    name = obj["metadata"]["name"]
    code, live = plane.api(state, f"{path}/{name}")
    if code == 200:
        # An update names the version it replaces (not every kind takes one without it), and
        # a Service keeps the cluster IP it was given (a new POST would fail on it: taken).
        metadata = {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}
        code, body = plane.api(state, f"{path}/{name}", "PUT", {**obj, "metadata": metadata})
    else:
        code, body = plane.api(state, path, "POST", obj)
    if code not in (200, 201):
        raise RealNodeError(f"creating {obj['kind']} {name}: HTTP {code}: {body}")


def _apply_cluster_objects(state: PlaneState, gateway: str, port: int) -> None:
    for binding in rc.rbac_objects():
        _create(state, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    _create(
        state,
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        rc.kubernetes_endpoint_slice(gateway, port),
    )
    policy, binding = realplacement.policy_objects()
    admission = "/apis/admissionregistration.k8s.io/v1"
    _create(state, f"{admission}/mutatingadmissionpolicies", policy)
    _create(state, f"{admission}/mutatingadmissionpolicybindings", binding)


def _node_kubeconfig(layout: Layout, server: str, who: ClientIdentity) -> str:
    cert, key = issue_client_cert(layout.pki, who)
    doc = kubeconfig(server, layout.pki.ca_cert.read_bytes(), cert, key, who.user)
    return yaml.safe_dump(rc.with_tls_server_name(doc), sort_keys=False)


def _write_node_files(
    state: PlaneState,
    node: str,
    pod_range: ipaddress.IPv4Network,
    cluster_range: ipaddress.IPv4Network,
    gateway: str,
    programs: nodebuild.NodePrograms,
) -> rc.NodeLayout:
    state_dir = Path(state.state_dir)
    layout = Layout(state_dir)
    files = rc.node_layout(state_dir, node)
    for folder in (files.etc / "cni", files.containerd, files.logs):
        folder.mkdir(parents=True, exist_ok=True)
    server = rc.node_server(gateway, state.ports["apiserver"])
    kubelet_identity = ClientIdentity(f"kubelet-{node}", f"system:node:{node}", (rc.NODE_GROUP,))
    proxy_identity = ClientIdentity("kube-proxy", rc.KUBE_PROXY_USER)
    texts = {
        "entrypoint.sh": rc.entrypoint_script(node, programs.pause_archive.name),
        "containerd.toml": rc.containerd_config(programs.pause_image),
        "kubelet.yaml": yaml.safe_dump(rc.kubelet_config(pod_range, clusterdns.SERVICE_IP)),
        "kube-proxy.yaml": yaml.safe_dump(rc.kube_proxy_config(node, cluster_range)),
        "kubelet.kubeconfig": _node_kubeconfig(layout, server, kubelet_identity),
        "kube-proxy.kubeconfig": _node_kubeconfig(layout, server, proxy_identity),
        "ca.crt": layout.pki.ca_cert.read_text(),
        "cni/10-mlext.conflist": json.dumps(rc.cni_config(pod_range), indent=2),
    }
    for name, text in texts.items():
        path = files.etc / name
        path.write_text(text)
        path.chmod(0o600 if name.endswith("kubeconfig") else 0o644)
    return files


def _node_ready(state: PlaneState, node: str) -> bool:
    code, body = plane.api(state, f"/api/v1/nodes/{node}")
    if code != 200 or not isinstance(body, dict):
        return False
    conds = body.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def node_logs_summary(state_dir: Path, node: str) -> str:
    """The last lines of a node's own, containerd's and the kubelet's logs, for an error."""
    logs = rc.node_layout(state_dir, node).logs
    return "\n".join(
        f"--- {logs / name}:\n{_log_tail(logs / name)}"
        for name in ("node.log", "containerd.log", "kubelet.log")
    )


def _wait_ready(state: PlaneState, started: dict[str, float], timeout: float) -> dict[str, float]:
    """Wait until every node in ``started`` is Ready; seconds from its container's start."""
    state_dir = Path(state.state_dir)
    pid = rc.plane_id(state_dir)
    ready: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(ready) < len(started):
        for node, t0 in started.items():
            if node in ready:
                continue
            if _node_ready(state, node):
                ready[node] = round(time.monotonic() - t0, 1)
            elif not _running(rc.container_name(pid, node)):
                raise RealNodeError(
                    f"the container of real node {node} stopped before the node was Ready\n"
                    + node_logs_summary(state_dir, node)
                )
        if len(ready) == len(started):
            break
        if time.monotonic() >= deadline:
            late = sorted(set(started) - set(ready))
            raise RealNodeError(
                f"real node(s) {', '.join(late)} not Ready after {timeout:.0f}s\n"
                + "\n".join(node_logs_summary(state_dir, n) for n in late)
            )
        time.sleep(0.25)
    return ready


def _plane_alive(state_dir: Path) -> bool:
    try:
        st = plane.status(state_dir)
    except plane.PlaneError:
        return False
    return any(c.name == "kube-apiserver" and c.alive for c in st.components)


def sweep_orphans(keep: str | None = None) -> list[str]:
    """Remove the Docker objects of planes that are gone (a test run killed before it could stop
    its plane leaves its nodes running); return the ids of the planes swept. ``keep`` is never
    swept."""
    fmt = f'{{{{.Label "{rc.PLANE_LABEL}"}}}} {{{{.Label "{rc.STATE_DIR_LABEL}"}}}}'
    owners: set[tuple[str, str]] = set()
    for kind in (("ps", "-a"), ("network", "ls")):
        out = hostdocker.docker(
            *kind, "--filter", f"label={rc.PLANE_LABEL}", "--format", fmt, check=False
        ).stdout
        for line in out.splitlines():
            pid, _, folder = line.partition(" ")
            if pid and folder:
                owners.add((pid, folder))
    swept = []
    for pid, folder in sorted(owners):
        if pid == keep or _plane_alive(Path(folder)):
            continue
        hostroutes.remove_plane_routes(pid)
        hostdocker.remove_labelled(f"{rc.PLANE_LABEL}={pid}")
        swept.append(pid)
    return swept


def start_nodes(
    state: PlaneState,
    count: int,
    progress: Progress | None = None,
    timeout: float = READY_TIMEOUT,
) -> list[RealNode]:
    """Give the running plane ``count`` real nodes (those already running are kept) and wait
    until all are Ready. Raises hostdocker.DockerUnavailable where Docker cannot run, and
    BuildError or RealNodeError (with the nodes' logs) when something else fails."""
    say = progress or (lambda _line: None)
    if not 0 <= count <= rc.MAX_REAL_NODES:
        raise RealNodeError(f"real nodes: 0 to {rc.MAX_REAL_NODES}, not {count}")
    if count == 0:
        return []
    hostdocker.ensure_docker(say)
    programs = nodebuild.ensure_built(say)
    image = nodeimage.ensure_image(say)
    state_dir = Path(state.state_dir)
    pid = rc.plane_id(state_dir)
    swept = sweep_orphans(keep=pid)
    if swept:
        say(f"removed the real nodes of {len(swept)} plane(s) that no longer run")
    # The folder first: it tells plane.stop to look for Docker objects of this plane.
    rc.realnodes_dir(state_dir).mkdir(parents=True, exist_ok=True)
    gateway, cluster_range = _ensure_network(pid, state_dir)
    port = state.ports["apiserver"]
    _ensure_forwarder(pid, state_dir, image, gateway, port)
    _apply_cluster_objects(state, gateway, port)

    started: dict[str, float] = {}
    kept: list[str] = []
    for index in range(count):
        node = rc.node_name(index)
        container = rc.container_name(pid, node)
        if _running(container):
            kept.append(node)
            continue
        if _inspect("container", container) is not None:
            _docker("rm", "-f", "-v", container)
        # A Node left by an earlier container of this name may still say Ready: wait for
        # the new kubelet's word, not the old one's.
        plane.api(state, f"/api/v1/nodes/{node}", "DELETE")
        pod_range = rc.node_pod_range(cluster_range, index)
        _write_node_files(state, node, pod_range, cluster_range, gateway, programs)
        args = rc.node_run_args(
            pid, state_dir, node, image, programs.bin_dir, programs.pause_archive.parent
        )
        started[node] = time.monotonic()
        _docker(*args)
    if started:
        say(
            f"starting {len(started)} real node(s) ({', '.join(started)}) on {rc.network_name(pid)}"
        )
    ready = _wait_ready(state, started, timeout)
    nodes = [RealNode(n, rc.container_name(pid, n)) for n in kept]
    nodes += [RealNode(n, rc.container_name(pid, n), ready[n]) for n in started]
    for n in nodes:
        if n.ready_seconds is not None:
            say(f"real node {n.name} Ready {n.ready_seconds}s after its container started")
    route_pods(state_dir, say)
    seconds = start_cluster_dns(state, programs, timeout=DNS_READY_TIMEOUT)
    say(f"cluster DNS (CoreDNS at {clusterdns.SERVICE_IP}) ready in {seconds:.1f}s")
    return sorted(nodes, key=lambda n: n.name)


# ---------------------------------------------------------------------------------------------
# the pod network: routes from the host and between nodes


_NODE_INDEX = re.compile(r"^real-node-(\d+)$")


def _node_addresses(state_dir: Path) -> dict[str, tuple[ipaddress.IPv4Network, str]]:
    """Every running real node of the plane: its pod /24 and its address on the network."""
    pid = rc.plane_id(state_dir)
    cluster_range = hostroutes.claimed_pod_range(pid)
    if cluster_range is None:
        return {}
    out: dict[str, tuple[ipaddress.IPv4Network, str]] = {}
    for node in list_nodes(state_dir):
        match = _NODE_INDEX.match(node.name)
        info = _inspect("container", node.container)
        if match is None or not info:
            continue
        nets = info[0].get("NetworkSettings", {}).get("Networks", {})
        address = (nets.get(rc.network_name(pid)) or {}).get("IPAddress")
        if address:
            out[node.name] = (rc.node_pod_range(cluster_range, int(match.group(1))), address)
    return out


def route_pods(state_dir: Path, progress: Progress | None = None) -> None:
    """Route every real node's pod range from the host and from every other node (idempotent;
    run after each start, since a new node needs routes on the old ones too)."""
    say = progress or (lambda _line: None)
    nodes = _node_addresses(state_dir)
    for node, commands in podnetwork.node_routes(nodes).items():
        container = rc.container_name(rc.plane_id(state_dir), node)
        for cmd in commands:
            _docker("exec", container, *cmd)
    if not hostroutes.can_route():
        say("not root: the host has no route to the real nodes' pods (pod IPs answer only "
            "inside the plane)")  # fmt: skip
        return
    for cmd in podnetwork.host_routes(nodes):
        error = hostroutes.add(cmd)
        if error:
            raise RealNodeError(f"`{' '.join(cmd)}` on the host failed: {error}")


# ---------------------------------------------------------------------------------------------
# cluster DNS


def _load_archive(archive: Path, nodes: list[RealNode]) -> None:
    for node in nodes:
        with open(archive, "rb") as data:
            load = subprocess.run(
                [hostdocker.docker_cli(), "exec", "-i", node.container, *rc.ctr_import_command()],
                stdin=data,
                capture_output=True,
                text=True,
                check=False,
            )
        if load.returncode != 0:
            raise RealNodeError(
                f"loading {archive.name} into {node.name} failed: {load.stderr.strip()}"
            )


def _dns_ready(state: PlaneState) -> bool:
    path = f"/apis/apps/v1/namespaces/{clusterdns.NAMESPACE}/daemonsets/{clusterdns.NAME}"
    code, body = plane.api(state, path)
    if code != 200 or not isinstance(body, dict):
        return False
    st = body.get("status", {})
    desired = st.get("desiredNumberScheduled", 0)
    return bool(
        desired
        and st.get("observedGeneration") == body["metadata"].get("generation")
        and st.get("numberReady") == desired
        and st.get("updatedNumberScheduled") == desired
    )


def start_cluster_dns(
    state: PlaneState, programs: nodebuild.NodePrograms, timeout: float = DNS_READY_TIMEOUT
) -> float:
    """Load CoreDNS's image into every real node, create its objects (kept up to date if there)
    and wait until every node's CoreDNS is ready; returns the seconds taken."""
    began = time.monotonic()
    state_dir = Path(state.state_dir)
    _load_archive(programs.coredns_archive, list_nodes(state_dir))
    for path, obj in clusterdns.objects(programs.coredns_image):
        _create(state, path, obj)
    deadline = time.monotonic() + timeout
    while not _dns_ready(state):
        if time.monotonic() >= deadline:
            raise RealNodeError(
                f"CoreDNS on the real nodes not ready after {timeout:.0f}s; see `kubectl -n "
                f"{clusterdns.NAMESPACE} describe daemonset {clusterdns.NAME}`"
            )
        time.sleep(0.5)
    return time.monotonic() - began


def host_address(state_dir: Path) -> str | None:
    """The address at which the plane's pods reach this host: its Docker network's gateway (the
    API server's forwarder listens there too). A server on the host bound to it, such as
    `git daemon --listen=ADDRESS` for the in-cluster controller, answers pods. None when the
    plane has no network (no real node was started)."""
    if not rc.realnodes_dir(state_dir).exists() or not hostdocker.daemon_ready():
        return None
    try:
        return _gateway(rc.plane_id(state_dir))
    except RealNodeError:
        return None


def list_nodes(state_dir: Path) -> list[RealNode]:
    """The plane's real-node containers that are running (none if Docker is not running)."""
    if not rc.realnodes_dir(state_dir).exists() or not hostdocker.daemon_ready():
        return []
    pid = rc.plane_id(state_dir)
    out = hostdocker.docker(
        "ps", "--format", "{{.Names}}",
        "--filter", f"label={rc.PLANE_LABEL}={pid}",
        "--filter", f"label={rc.ROLE_LABEL}=node",
        check=False,
    ).stdout  # fmt: skip
    prefix = f"mlext-{pid}-"
    return sorted(
        (RealNode(c[len(prefix) :], c) for c in out.split() if c.startswith(prefix)),
        key=lambda n: n.name,
    )


def load_image(state_dir: Path, image: str, nodes: list[RealNode] | None = None) -> None:
    """Load a Docker image of this host into the containerd of real nodes (all by default), so
    pods with ``imagePullPolicy: Never`` or ``IfNotPresent`` run it: no registry is needed."""
    targets = nodes if nodes is not None else list_nodes(state_dir)
    if not targets:
        raise RealNodeError(
            f"the plane in {state_dir} has no running real node to load {image} into"
        )
    for node in targets:
        stream_images(node, [image])


def stream_images(node: RealNode, images: list[str]) -> None:
    """``docker save`` of all ``images`` as one archive (layers they share go once) straight
    into ``ctr images import -`` in the node: no file."""
    docker = hostdocker.docker_cli()
    with subprocess.Popen(
        [docker, "save", *images], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as save:
        load = subprocess.run(
            [docker, "exec", "-i", node.container, *rc.ctr_import_command()],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert save.stdout is not None and save.stderr is not None
        save.stdout.close()
        save_err = save.stderr.read().decode(errors="replace")
        save_code = save.wait()
    if save_code != 0 or load.returncode != 0:
        raise RealNodeError(
            f"loading {', '.join(images)} into {node.name} failed: "
            f"{save_err.strip() or load.stderr.strip() or load.stdout.strip()}"
        )
