"""The versions a real node is made of, pinned in this one place.

The Kubernetes version (kubelet, kube-proxy, the pause program) is not here: it is the control
plane's, read from ``controlplane/go.mod`` (``build.pinned_kubernetes_version``), so the nodes and
the API server never drift apart. Everything else a real node runs is named here: containerd from
the Go module proxy, and the Debian release and packages of the node's root file system (runc and
the CNI plugins come from Debian). ``nodebuild`` and ``nodeimage`` build from these pins and key
their caches on them.
"""

from __future__ import annotations

# containerd 2.x: Kubernetes 1.36's kubelet needs it (Debian's 1.6 is too old). 2.2.10 has no
# replace directives, so `go install module/cmd/...@version` builds it as released.
CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
CONTAINERD_VERSION = "v2.2.10"
CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")
# No cgo, so no btrfs, devmapper or zfs snapshotters: the node uses overlayfs only.
CONTAINERD_BUILD_TAGS = ("no_btrfs", "no_devmapper", "no_zfs")

# The Kubernetes node programs, built from k8s.io/kubernetes in the control plane's Go module
# (its go.mod lists them as `tool`s, so their dependencies are in its go.sum).
KUBE_NODE_PACKAGES = ("k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy")

# The pause program's release, as k8s.io/kubernetes' build/pause/Makefile names it (TAG).
PAUSE_TAG = "3.10.2"

# The node's root file system: Debian's minimal base plus what containerd, runc, the CNI plugins,
# kube-proxy (iptables, conntrack) and the API-server forwarder (socat) need.
DEBIAN_SUITE = "bookworm"
NODE_PACKAGES = (
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "mount",
    "util-linux",
    "iproute2",
    "procps",
    "socat",
    "ca-certificates",
)

# Where Debian's packages put the CNI plugins and runc inside the node.
CNI_BIN_DIR = "/usr/lib/cni"
RUNC_PATH = "/usr/sbin/runc"

# Local image names: a registry host no one can reach, so nothing tries to pull them.
IMAGE_REGISTRY = "mlext.local"

# The Python base of the pods' images (``localimages``): the project's image is built on it from
# the Dockerfile when the Dockerfile's base cannot be pulled, and so is every stand-in for an
# image the manifests name. Debian's Python (3.11 in bookworm, the Dockerfile's python:3.11);
# python-is-python3 because the Dockerfile and the examples call `python`; python3-venv for the
# virtualenvs both make; passwd for the Dockerfile's useradd.
PYTHON_BASE_PACKAGES = (
    "python3",
    "python3-venv",
    "python-is-python3",
    "ca-certificates",
    "passwd",
)

# What the stand-ins for the curated environments add to the model server, from PyPI: the
# libraries each environment is named after, at versions those environments ship.
SKLEARN_PACKAGES = ("scikit-learn==1.5.2", "pandas==2.2.3")
LIGHTGBM_PACKAGES = ("lightgbm==3.3.5", "scikit-learn==1.5.2", "pandas==2.2.3")
# Debian packages a stand-in needs besides the base (lightgbm's wheel links OpenMP).
LIGHTGBM_DEBIAN_PACKAGES = ("libgomp1",)
# What the stand-ins' conda stand-in (`micromamba create`) runs on: Debian's Python with the
# libraries `condafile` reads conda files with.
CONDA_SHIM_DEBIAN_PACKAGES = ("python3-yaml", "python3-packaging")
# The MLflow inference image's stand-in resolves the model server and MLflow as one set (layered
# on the model server's environment, mlflow pulled an opentelemetry-sdk the server's exporter
# cannot import); the libraries are those the public MLflow example's model was saved with.
MLFLOW_PACKAGES = (
    "mlflow-skinny==2.22.1",
    "scikit-learn==1.7.0",
    "pandas==2.2.3",
    "cloudpickle==3.1.1",
    "psutil==7.0.0",
)

# Cluster DNS for pods on real nodes: CoreDNS as released (its go.mod has no replace directives,
# so `go install module@version` builds it with its own go.sum), static, no cgo.
COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_VERSION = "v1.15.0"
