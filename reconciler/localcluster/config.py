"""Pure logic of the local control plane: layout, ports, flags, kubeconfigs, nodes, state record.

Nothing here touches a process or the network, so all of it can be tested without a plane.
``plane`` turns these values into running processes; ``cli`` shows them to a person.

The plane is one etcd, one kube-apiserver (RBAC on, client-certificate authentication,
service-account tokens signed by its own key), one kube-controller-manager, one kube-scheduler
and one kwok, which simulates the kubelets of the nodes labelled ``type=kwok`` that the plane
creates. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reconciler.localcluster.pki import (
    ADMIN,
    APISERVER_KUBELET_CLIENT,
    CONTROLLER_MANAGER,
    FRONT_PROXY,
    KWOK,
    SCHEDULER,
    PkiPaths,
)

LOOPBACK = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR: the `kubernetes` service
POD_CIDR = "10.244.0.1/16"  # kwok hands pod IPs out of this range
CLUSTER_NAME = "reconciler-local"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

KWOK_NODE_LABEL = ("type", "kwok")
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = ("accelerator", "nvidia")

# Start order; stop goes the other way. etcd first, API server second, then its clients.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class Ports:
    """The loopback ports one plane listens on."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def from_list(cls, ports: list[int]) -> Ports:
        """Ports from five distinct free port numbers, in field order."""
        if len(ports) != 5 or len(set(ports)) != 5:
            raise ValueError(f"need 5 distinct ports, got {ports}")
        return cls(*ports)


@dataclass(frozen=True)
class Layout:
    """Where one plane keeps its files, all under one state folder."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> PkiPaths:
        return PkiPaths(self.root / "pki")

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kubeconfigs(self) -> Path:
        return self.root / "kubeconfigs"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def kubeconfig(self, component: str) -> Path:
        return self.kubeconfigs / f"{component}.kubeconfig"

    def owned_paths(self) -> list[Path]:
        """Everything a start creates, so a new start can clear an old one's leftovers."""
        return [
            self.state_file,
            self.admin_kubeconfig,
            self.pki.root,
            self.etcd_data,
            self.logs,
            self.kubeconfigs,
        ]


@dataclass(frozen=True)
class NodeSpec:
    """A simulated node: its name, capacity and labels."""

    name: str
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)


def default_nodes(cpu_nodes: int = 3, gpu_nodes: int = 1) -> list[NodeSpec]:
    """CPU nodes of 4 CPU / 16Gi and GPU nodes that add ``nvidia.com/gpu: 1`` and a label."""
    if cpu_nodes < 0 or gpu_nodes < 0:
        raise ValueError("node counts must not be negative")
    nodes = [
        NodeSpec(
            name=f"kwok-cpu-{i}",
            labels={"node.kubernetes.io/instance-type": "cpu-4x16"},
        )
        for i in range(cpu_nodes)
    ]
    nodes += [
        NodeSpec(
            name=f"kwok-gpu-{i}",
            gpus=1,
            labels={
                GPU_LABEL[0]: GPU_LABEL[1],
                "node.kubernetes.io/instance-type": "gpu-4x16-1",
            },
        )
        for i in range(gpu_nodes)
    ]
    return nodes


def node_manifest(spec: NodeSpec) -> dict[str, Any]:
    """The Node object for a simulated node; kwok fills in conditions, addresses and info.

    No taint: ordinary workloads schedule onto simulated nodes, as they would on a real cluster.
    """
    capacity: dict[str, str] = {
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": str(spec.pods),
        "ephemeral-storage": "100Gi",
    }
    if spec.gpus:
        capacity[GPU_RESOURCE] = str(spec.gpus)
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        KWOK_NODE_LABEL[0]: KWOK_NODE_LABEL[1],
        **spec.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {
                KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def apiserver_url(ports: Ports) -> str:
    return f"https://{LOOPBACK}:{ports.apiserver}"


def etcd_url(ports: Ports) -> str:
    return f"http://{LOOPBACK}:{ports.etcd_client}"


def etcd_args(layout: Layout, ports: Ports) -> list[str]:
    """etcd on loopback, plain HTTP, no fsync: a throwaway store for tests, not for keeping."""
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        "--name=default",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={etcd_url(ports)}",
        f"--advertise-client-urls={etcd_url(ports)}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=4294967296",
        "--auto-compaction-retention=5m",
        "--log-level=warn",
    ]


def apiserver_args(layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    return [
        f"--advertise-address={LOOPBACK}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--etcd-servers={etcd_url(ports)}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Front-proxy (aggregation layer) settings: they complete the
        # extension-apiserver-authentication config map that delegating servers read.
        f"--requestheader-client-ca-file={pki.ca_cert}",
        f"--requestheader-allowed-names={FRONT_PROXY.user}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.client_cert(FRONT_PROXY)}",
        f"--proxy-client-key-file={pki.client_key(FRONT_PROXY)}",
        # The `kubernetes` service cannot have a loopback endpoint; nothing in the plane needs it.
        "--endpoint-reconciler-type=none",
        # Real nodes (``realnode``): reach a kubelet (logs, exec) at the address it reports, not
        # by its host name, which only Docker's network resolves; authenticate to it with a
        # certificate of the plane's CA, as the kubelet requires.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--kubelet-client-certificate={pki.client_cert(APISERVER_KUBELET_CLIENT)}",
        f"--kubelet-client-key={pki.client_key(APISERVER_KUBELET_CLIENT)}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        "--event-ttl=1h",
    ]


def controller_manager_args(layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    kubeconfig = layout.kubeconfig("kube-controller-manager")
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.controller_manager}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--use-service-account-credentials=true",
        "--controllers=*",
        "--leader-elect=false",
        "--profiling=false",
    ]


def scheduler_args(layout: Layout, ports: Ports) -> list[str]:
    kubeconfig = layout.kubeconfig("kube-scheduler")
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.scheduler}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def kwok_args(layout: Layout, stages: Path) -> list[str]:
    """kwok managing only the nodes labelled ``type=kwok``, with its default stages."""
    return [
        f"--kubeconfig={layout.kubeconfig('kwok')}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-label-selector={KWOK_NODE_LABEL[0]}={KWOK_NODE_LABEL[1]}",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
    ]


def component_commands(
    binary: Path, layout: Layout, ports: Ports, stages: Path
) -> dict[str, list[str]]:
    """Each component's full command line, in start order."""
    args = {
        "etcd": etcd_args(layout, ports),
        "kube-apiserver": apiserver_args(layout, ports),
        "kube-controller-manager": controller_manager_args(layout, ports),
        "kube-scheduler": scheduler_args(layout, ports),
        "kwok": kwok_args(layout, stages),
    }
    return {name: [str(binary), name, *args[name]] for name in COMPONENTS}


def health_url(component: str, ports: Ports) -> str | None:
    """The URL that says a component is up (etcd over HTTP, the rest over HTTPS)."""
    return {
        "etcd": f"{etcd_url(ports)}/health",
        "kube-apiserver": f"{apiserver_url(ports)}/readyz",
        "kube-controller-manager": f"https://{LOOPBACK}:{ports.controller_manager}/healthz",
        "kube-scheduler": f"https://{LOOPBACK}:{ports.scheduler}/healthz",
    }.get(component)


def component_ports(component: str, ports: Ports) -> list[int]:
    """The plane's loopback ports a component listens on (kwok listens on none of them)."""
    return {
        "etcd": [ports.etcd_client, ports.etcd_peer],
        "kube-apiserver": [ports.apiserver],
        "kube-controller-manager": [ports.controller_manager],
        "kube-scheduler": [ports.scheduler],
    }.get(component, [])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(
    server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str
) -> dict[str, Any]:
    """A kubeconfig with the CA and client certificate embedded, so it works from anywhere."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert_pem),
                    "client-key-data": _b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


# Which client identity each kubeconfig carries.
KUBECONFIG_IDENTITIES = {
    "admin": ADMIN,
    "kube-controller-manager": CONTROLLER_MANAGER,
    "kube-scheduler": SCHEDULER,
    "kwok": KWOK,
}


@dataclass
class PlaneState:
    """What a running plane recorded about itself in ``state.json``.

    Written while the plane starts (so a failed start can still be cleaned up) and read by
    ``down`` and ``status`` from any process. ``commands`` holds each started component's
    command line and ``die_with_parent`` how it was started, so that one component can be
    killed and launched again exactly as before (``plane.relaunch``); ``pids`` then holds the
    new process.
    """

    version: str
    state_dir: str
    kubeconfig: str
    server: str
    binary: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    started_at: float = 0.0
    ready_seconds: float | None = None
    commands: dict[str, list[str]] = field(default_factory=dict)
    die_with_parent: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PlaneState:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("state file is not a JSON object")
        return cls(
            version=str(data["version"]),
            state_dir=str(data["state_dir"]),
            kubeconfig=str(data["kubeconfig"]),
            server=str(data["server"]),
            binary=str(data["binary"]),
            ports={str(k): int(v) for k, v in data.get("ports", {}).items()},
            pids={str(k): int(v) for k, v in data.get("pids", {}).items()},
            nodes=[str(n) for n in data.get("nodes", [])],
            started_at=float(data.get("started_at", 0.0)),
            ready_seconds=(
                None if data.get("ready_seconds") is None else float(data["ready_seconds"])
            ),
            commands={str(k): [str(arg) for arg in v] for k, v in data.get("commands", {}).items()},
            die_with_parent=bool(data.get("die_with_parent", False)),
        )


def stop_order(pids: Mapping[str, int]) -> list[list[str]]:
    """Components to stop, in waves: every client of etcd first, together; etcd last."""
    first = [c for c in reversed(COMPONENTS) if c in pids and c != "etcd"]
    extra = sorted(c for c in pids if c not in COMPONENTS)
    waves = [first + extra] if first or extra else []
    if "etcd" in pids:
        waves.append(["etcd"])
    return waves
