"""Pure logic of a real node: names, address ranges, config files and ``docker run`` lines.

A real node is a Docker container shaped as kind's nodes are (containerd, kubelet and kube-proxy
inside, pods as real containers under runc) joined to the local plane's API server. Everything
here is computed from the plane's state folder and a few values read at start (the Docker
network's gateway, the API server's port), so it is tested without Docker; ``realnode`` runs it.

What is derived per plane, so that two planes on one machine never collide: the Docker network
(one of the plane's own), container names, and the pod address ranges. Each piece of the shape
answers one obstacle found on these machines (``shared/REAL-NODES.md``):

- the VM's capability bounding set lacks CAP_SYS_RESOURCE, so ``--privileged`` fails: the node
  gets every other capability, no seccomp or AppArmor profile, all devices, /dev/kmsg and its own
  cgroup namespace instead, and remounts /sys and the cgroup hierarchies read-write inside;
- containerd would lower a sandbox's OOM score (CAP_SYS_RESOURCE): ``restrict_oom_score_adj``;
- the kubelet refuses cgroup v1 unless told (``failCgroupV1: false``) and uses cgroupfs;
- containerd's overlay snapshots cannot sit on Docker's overlay: /var/lib/containerd is a folder
  on the host's disk;
- the API server listens on loopback only: a forwarder on the network's gateway reaches it, and
  the kubeconfigs name ``localhost`` as the TLS server name, which its certificate covers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.localcluster import nodepins

REAL_NODE_LABEL = ("mlext.io/real-node", "true")
# Nothing lands on a real node unless it tolerates this taint: what runs on kwok nodes today
# stays there until a change opts its pods in. NoExecute, not NoSchedule: the extension's
# fluent-bit DaemonSet tolerates every NoSchedule taint, and on a real node its image (no
# registry here) would never pull, so the extension would never be healthy.
REAL_NODE_TAINT = {"key": "mlext.io/real-node", "value": "true", "effect": "NoExecute"}
REAL_NODE_TOLERATION = {
    "key": "mlext.io/real-node",
    "operator": "Equal",
    "value": "true",
    "effect": "NoExecute",
}

# Docker labels on everything a plane creates, so that a stop (or a later start after a crash)
# finds and removes it all.
PLANE_LABEL = "mlext.io/plane"
STATE_DIR_LABEL = "mlext.io/state-dir"
ROLE_LABEL = "mlext.io/role"
# The /20 of pod addresses a plane claims, on its Docker network (``podnetwork``).
POD_RANGE_LABEL = "mlext.io/pod-range"

# Pod address ranges of real nodes: out of 10.245.0.0/16 (kwok hands out 10.244.0.0/16), one /20
# per plane (preferably the one its id picks; ``podnetwork`` chooses another when that one is
# taken), one /24 per node within it.
POD_SUPERNET = ipaddress.ip_network("10.245.0.0/16")
PLANE_POD_PREFIX = 20
NODE_POD_PREFIX = 24
MAX_REAL_NODES = 2 ** (NODE_POD_PREFIX - PLANE_POD_PREFIX)

# Paths inside the node container.
NODE_ETC = "/etc/mlext"
NODE_BIN = "/opt/mlext/bin"
NODE_IMAGES = "/opt/mlext/images"
NODE_LOGS = "/var/log/mlext"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"

# The user the API server presents to kubelets (logs, exec); bound to system:kubelet-api-admin.
APISERVER_KUBELET_USER = "kube-apiserver-kubelet-client"
NODE_GROUP = "system:nodes"
KUBE_PROXY_USER = "system:kube-proxy"  # bound to system:node-proxier by Kubernetes' own RBAC

CLUSTER_DOMAIN = "cluster.local"


def plane_id(state_dir: Path) -> str:
    """A short id of a plane, from its state folder: the stem of every Docker name it uses."""
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]


def network_name(pid: str) -> str:
    return f"mlext-{pid}"


def forwarder_name(pid: str) -> str:
    return f"mlext-{pid}-apiserver"


def node_name(index: int) -> str:
    """The Kubernetes name of the plane's ``index``-th real node."""
    return f"real-node-{index}"


def container_name(pid: str, node: str) -> str:
    return f"mlext-{pid}-{node}"


def plane_pod_range(pid: str) -> ipaddress.IPv4Network:
    """The /20 of pod addresses this plane prefers for its real nodes (kube-proxy's cluster
    CIDR), unless another plane has claimed it (``podnetwork.choose_plane_range``)."""
    ranges = list(POD_SUPERNET.subnets(new_prefix=PLANE_POD_PREFIX))
    net = ranges[int(pid, 16) % len(ranges)]
    assert isinstance(net, ipaddress.IPv4Network)
    return net


def node_pod_range(plane_range: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Network:
    """The /24 a node hands its pods' addresses out of, within its plane's /20."""
    if not 0 <= index < MAX_REAL_NODES:
        raise ValueError(f"a plane has at most {MAX_REAL_NODES} real nodes")
    net = list(plane_range.subnets(new_prefix=NODE_POD_PREFIX))[index]
    assert isinstance(net, ipaddress.IPv4Network)
    return net


def labels(pid: str, state_dir: Path, role: str) -> dict[str, str]:
    return {PLANE_LABEL: pid, STATE_DIR_LABEL: str(state_dir), ROLE_LABEL: role}


def _label_args(values: dict[str, str]) -> list[str]:
    return [arg for k, v in sorted(values.items()) for arg in ("--label", f"{k}={v}")]


@dataclass(frozen=True)
class NodeLayout:
    """Where one real node keeps its files on the host: ``<state>/realnodes/<node>/``, removed
    with the node, and its logs in ``<state>/logs/<node>/``, kept like the plane's own logs."""

    root: Path
    logs: Path

    @property
    def etc(self) -> Path:
        """Config, certificates, the CNI config and the entrypoint (mounted read-only)."""
        return self.root / "etc"

    @property
    def containerd(self) -> Path:
        """containerd's storage, on the host's disk (no overlay on overlay)."""
        return self.root / "containerd"


def realnodes_dir(state_dir: Path) -> Path:
    return state_dir / "realnodes"


def node_layout(state_dir: Path, node: str) -> NodeLayout:
    return NodeLayout(realnodes_dir(state_dir) / node, state_dir / "logs" / node)


def network_create_args(
    pid: str, state_dir: Path, pod_range: ipaddress.IPv4Network | None = None
) -> list[str]:
    """``docker network create``: a bridge of the plane's own; Docker picks a free subnet. The
    network carries the plane's claim on its pod range (``podnetwork``)."""
    claim = {POD_RANGE_LABEL: str(pod_range)} if pod_range is not None else {}
    return [
        "network", "create", "--driver", "bridge",
        *_label_args({**labels(pid, state_dir, "network"), **claim}),
        network_name(pid),
    ]  # fmt: skip


def forwarder_run_args(pid: str, state_dir: Path, image: str, gateway: str, port: int) -> list[str]:
    """``docker run`` of the forwarder: socat in the host's network namespace, from the plane's
    network's gateway to the API server on loopback (the same port number on both sides)."""
    return [
        "run", "-d", "--name", forwarder_name(pid), "--network", "host", "--init",
        *_label_args(labels(pid, state_dir, "forwarder")),
        image,
        "socat", f"TCP-LISTEN:{port},bind={gateway},fork,reuseaddr", f"TCP:127.0.0.1:{port}",
    ]  # fmt: skip


def node_run_args(
    pid: str,
    state_dir: Path,
    node: str,
    image: str,
    bin_dir: Path,
    images_dir: Path,
) -> list[str]:
    """``docker run`` of a node container (see the module docstring for why each option)."""
    layout = node_layout(state_dir, node)
    return [
        "run", "-d", "--name", container_name(pid, node), "--hostname", node,
        "--network", network_name(pid),
        *_label_args(labels(pid, state_dir, "node")),
        # --privileged would ask for CAP_SYS_RESOURCE, which this VM's bounding set lacks.
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined",
        "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined",
        "--device-cgroup-rule", "a *:* rwm",
        "--device", "/dev/kmsg",
        "--cgroupns", "private",
        # tini as PID 1 reaps the shims containerd leaves behind.
        "--init",
        "-v", f"{layout.containerd}:/var/lib/containerd",
        "-v", f"{layout.etc}:{NODE_ETC}:ro",
        "-v", f"{layout.logs}:{NODE_LOGS}",
        "-v", f"{bin_dir}:{NODE_BIN}:ro",
        "-v", f"{images_dir}:{NODE_IMAGES}:ro",
        image,
        "/bin/bash", f"{NODE_ETC}/entrypoint.sh",
    ]  # fmt: skip


def containerd_config(pause_image: str) -> str:
    """containerd 2.x's config (version 3): CRI with runc from Debian, CNI plugins from Debian,
    overlayfs snapshots, the locally built pause image, and no OOM-score lowering."""
    runtime = "plugins.'io.containerd.cri.v1.runtime'"
    images = "plugins.'io.containerd.cri.v1.images'"
    return f"""version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[{runtime}]
  # Lowering a sandbox's oom_score_adj needs CAP_SYS_RESOURCE, which the node does not have.
  restrict_oom_score_adj = true

[{runtime}.containerd]
  default_runtime_name = "runc"

[{runtime}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{runtime}.containerd.runtimes.runc.options]
  BinaryName = "{nodepins.RUNC_PATH}"
  SystemdCgroup = false

[{runtime}.cni]
  bin_dirs = ["{nodepins.CNI_BIN_DIR}"]
  conf_dir = "{NODE_ETC}/cni"

[{images}]
  snapshotter = "overlayfs"

[{images}.pinned_images]
  sandbox = "{pause_image}"
"""


def cni_config(pod_range: ipaddress.IPv4Network) -> dict[str, Any]:
    """A bridge network for the node's pods, addresses from its /24, NAT to the outside."""
    return {
        "cniVersion": "1.0.0",
        "name": "mlext",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(pod_range)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(pod_range: ipaddress.IPv4Network, cluster_dns: str) -> dict[str, Any]:
    """The KubeletConfiguration of a real node; its pods resolve names at ``cluster_dns`` (the
    ``kube-dns`` Service, ``clusterdns``) with the cluster domain's search list."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Kubernetes 1.36 refuses cgroup v1 (all these machines have) unless told otherwise.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "podCIDR": str(pod_range),
        # The API server presents a certificate from the plane's CA; everyone else is refused,
        # and what a client may do is asked of the API server (RBAC).
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": f"{NODE_ETC}/ca.crt"},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [cluster_dns],
        "clusterDomain": CLUSTER_DOMAIN,
        "failSwapOn": False,
        "registerWithTaints": [REAL_NODE_TAINT],
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "serializeImagePulls": False,
        # cAdvisor sees no file-system figures for the VM's disk, so disk-based eviction and
        # image garbage collection would act on nothing: both are off.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }


def kube_proxy_config(node: str, cluster_cidr: ipaddress.IPv4Network) -> dict[str, Any]:
    """kube-proxy in iptables mode; it leaves the kernel's conntrack settings as they are (a
    node container may not change them)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": f"{NODE_ETC}/kube-proxy.kubeconfig"},
        "hostnameOverride": node,
        "mode": "iptables",
        "clusterCIDR": str(cluster_cidr),
        "conntrack": {
            "maxPerCore": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "metricsBindAddress": "127.0.0.1:10249",
    }


def node_server(gateway: str, port: int) -> str:
    """The API server's URL as seen from inside a node: the forwarder on the gateway."""
    return f"https://{gateway}:{port}"


def with_tls_server_name(kubeconfig: dict[str, Any], name: str = "localhost") -> dict[str, Any]:
    """The kubeconfig checking the server's certificate for ``name`` (the forwarder's address
    is not in it; ``localhost`` is)."""
    out: dict[str, Any] = json.loads(json.dumps(kubeconfig))
    for cluster in out["clusters"]:
        cluster["cluster"]["tls-server-name"] = name
    return out


def ctr_import_command() -> list[str]:
    """Inside a node: import an image archive from stdin into the namespace the kubelet uses."""
    return [f"{NODE_BIN}/ctr", "-n", "k8s.io", "images", "import", "-"]


def kubelet_args(node: str) -> list[str]:
    """The kubelet's flags; the node's own address is added at start (``$NODE_IP``)."""
    return [
        f"--config={NODE_ETC}/kubelet.yaml",
        f"--kubeconfig={NODE_ETC}/kubelet.kubeconfig",
        f"--hostname-override={node}",
        f"--node-labels={REAL_NODE_LABEL[0]}={REAL_NODE_LABEL[1]}",
        "--v=1",
    ]


def entrypoint_script(node: str, pause_archive_name: str) -> str:
    """The node container's main program (under tini): fix the mounts, start containerd, load the
    pause image, then the kubelet and kube-proxy; exit when any of them exits."""
    kubelet = " ".join(kubelet_args(node))
    return f"""#!/bin/bash
# Real node {node}: containerd, kubelet and kube-proxy (written by reconciler.localcluster).
set -euo pipefail
export PATH={NODE_BIN}:$PATH
log={NODE_LOGS}
say() {{ echo "$(date +%T.%N | cut -c1-12) $*" >>"$log/node.log"; }}
say "node container started"

# Docker mounts /sys and the cgroup hierarchies read-only; the kubelet and runc write to them.
# A plain remount,rw of a cgroup hierarchy says "busy": remount the bind instead.
mount -o remount,rw /sys
for d in /sys/fs/cgroup/*; do
  if mountpoint -q "$d"; then mount -o remount,bind,rw "$d"; fi
done
# Volume mounts made by the kubelet must reach the containers' mount namespaces.
mount --make-rshared /

containerd --config {NODE_ETC}/containerd.toml >>"$log/containerd.log" 2>&1 &
for _ in $(seq 300); do
  [ -S {CONTAINERD_SOCKET} ] && break
  sleep 0.1
done
ctr -n k8s.io images import {NODE_IMAGES}/{pause_archive_name} >>"$log/node.log" 2>&1
say "containerd up, pause image loaded"

NODE_IP=$(ip -4 -o addr show dev eth0 | awk '{{print $4}}' | cut -d/ -f1)
kubelet {kubelet} --node-ip="$NODE_IP" >>"$log/kubelet.log" 2>&1 &
kube-proxy --config={NODE_ETC}/kube-proxy.yaml >>"$log/kube-proxy.log" 2>&1 &
say "kubelet and kube-proxy started on $NODE_IP"

set +e
wait -n
code=$?
say "a node program exited with code $code; the node stops"
exit "$code"
"""


def parse_gateway(network_inspect: list[dict[str, Any]]) -> str | None:
    """The gateway address of a network from ``docker network inspect`` output, if it says."""
    for net in network_inspect:
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            gateway = cfg.get("Gateway")
            if gateway:
                return str(gateway)
    return None


def parse_bridge_address(ip_addr_json: list[dict[str, Any]]) -> str | None:
    """The first IPv4 address of an interface from ``ip -j -4 addr show DEV``."""
    for link in ip_addr_json:
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet" and addr.get("local"):
                return str(addr["local"])
    return None


def rbac_objects() -> list[dict[str, Any]]:
    """The bindings real nodes need on the plane's RBAC-only API server: kubelets (group
    system:nodes) act as Kubernetes' system:node role says, and the API server may use the
    kubelets' API (logs, exec) as system:kubelet-api-admin."""

    def binding(name: str, role: str, kind: str, subject: str) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
        }

    return [
        binding("mlext:real-nodes", "system:node", "Group", NODE_GROUP),
        binding(
            "mlext:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            "User",
            APISERVER_KUBELET_USER,
        ),
    ]


def kubernetes_endpoint_slice(gateway: str, port: int) -> dict[str, Any]:
    """An EndpointSlice of the ``kubernetes`` Service pointing at the forwarder: the plane runs
    with no endpoint reconciler (its API server is on loopback), so pods on real nodes would
    otherwise find no API server behind 10.96.0.1."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes-real-nodes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "localcluster.mlext.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [gateway], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
