"""Cluster DNS for pods on real nodes: CoreDNS's objects, as pure data.

Pods on real nodes are told (kubelet ``clusterDNS``) to ask :data:`SERVICE_IP`, the ``kube-dns``
Service's address, for names; the search list ``<ns>.svc.cluster.local svc.cluster.local
cluster.local`` makes short Service names work. Behind the Service runs CoreDNS (built from the Go
module proxy by ``nodebuild``, its image a single static binary).

Where it runs, and why: as a DaemonSet on the real nodes, in the node's network namespace
(``hostNetwork``). A pod rather than a process the plane or the node container supervises, so
the kubelet restarts it, its readiness decides the Service's endpoints (the plane's own
EndpointSlice controller keeps them), ``kubectl logs`` reads it, and a node added later gets its
own with no extra code. In the node's network namespace because that is where Docker's resolver
for the node container answers (``127.0.0.11``, the node's ``/etc/resolv.conf``): CoreDNS forwards
every name outside ``cluster.local`` there, and Docker's resolver asks the host's upstream ones,
so external names resolve in pods exactly as they do on the node (and fail as fast where the host
has none). A pod network CoreDNS could not reach 127.0.0.11.

``realnode`` creates these objects after the nodes are Ready and loads the image into them.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.config import SERVICE_CIDR

NAMESPACE = "kube-system"
NAME = "coredns"
SERVICE_NAME = "kube-dns"  # the name every Kubernetes distribution gives it
APP_LABEL = {"k8s-app": "kube-dns"}
# The tenth address of the Service range, by the convention kubeadm and kind follow.
SERVICE_IP = str(ipaddress.ip_network(SERVICE_CIDR)[10])
# In the node's network namespace: ports no node program uses (the kubelet has 10248/10250,
# kube-proxy 10249/10256).
HEALTH_PORT = 8080
READY_PORT = 8181


def corefile(domain: str = rc.CLUSTER_DOMAIN) -> str:
    """CoreDNS's configuration: the cluster's names from the API server, everything else
    forwarded to the node's resolver (see the module docstring), answers cached for 30 s."""
    return f""".:53 {{
    errors
    health :{HEALTH_PORT} {{
        lameduck 5s
    }}
    ready :{READY_PORT}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf {{
        max_concurrent 1000
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""


def _meta(name: str, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(APP_LABEL)}
    if namespaced:
        meta["namespace"] = NAMESPACE
    return meta


def service_account() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME)}


def cluster_role() -> dict[str, Any]:
    """What CoreDNS's kubernetes plugin reads (the same rules as kubeadm's system:coredns)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(f"system:{NAME}", namespaced=False),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    }


def cluster_role_binding() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(f"system:{NAME}", namespaced=False),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"system:{NAME}",
        },
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
    }


def config_map() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(NAME),
        "data": {"Corefile": corefile()},
    }


def daemon_set(image: str) -> dict[str, Any]:
    """One CoreDNS per real node, in the node's network namespace, on real nodes only."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(NAME),
        "spec": {
            "selector": {"matchLabels": dict(APP_LABEL)},
            "template": {
                "metadata": {"labels": dict(APP_LABEL)},
                "spec": {
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-node-critical",
                    "hostNetwork": True,
                    # Default: the node's resolv.conf (Docker's resolver), which CoreDNS forwards
                    # to; ClusterFirst would point CoreDNS at itself.
                    "dnsPolicy": "Default",
                    "nodeSelector": {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]},
                    "tolerations": [
                        rc.REAL_NODE_TOLERATION,
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                    ],
                    "containers": [
                        {
                            "name": NAME,
                            "image": image,
                            # Loaded into each node by realnode; there is no registry to pull from.
                            "imagePullPolicy": "Never",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            ],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "40Mi"},
                                "limits": {"memory": "170Mi"},
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/coredns", "readOnly": True}
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": HEALTH_PORT},
                                "initialDelaySeconds": 10,
                                "periodSeconds": 10,
                                "failureThreshold": 5,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": READY_PORT},
                                "periodSeconds": 2,
                            },
                        }
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": NAME}}],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    """``kube-dns`` at :data:`SERVICE_IP`, the address every real node's kubelet gives its pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(SERVICE_NAME),
        "spec": {
            "clusterIP": SERVICE_IP,
            "selector": dict(APP_LABEL),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }


def objects(image: str) -> list[tuple[str, dict[str, Any]]]:
    """Every object, in creation order, with the API collection path it is created in."""
    core = f"/api/v1/namespaces/{NAMESPACE}"
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    return [
        (f"{core}/serviceaccounts", service_account()),
        (f"{rbac}/clusterroles", cluster_role()),
        (f"{rbac}/clusterrolebindings", cluster_role_binding()),
        (f"{core}/configmaps", config_map()),
        (f"{core}/services", service()),
        (f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets", daemon_set(image)),
    ]
