"""The project's pods on the session plane's real node as the cluster tests drive them, and
scoring through the router.

`Pods` (the `pods` fixture in conftest.py, one per test) applies a repo with `--wait`, finds the
router pod of the test's namespace as `reconciler score` does (a ready endpoint of the router
Service, reached at its pod IP through the plane's host route), lists the model pods as the
kubelet reports them, reads their logs through the API server and kills or stops a container's
processes in the node (`ctr` in the node container, what a crash or a hang does). `post` sends
one scoring request and `primary_key` reads a deployment's key from its Secret.
"""

from __future__ import annotations

import base64
import http.client
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from reconciler import kube
from reconciler.cli import main as cli
from reconciler.cli import score
from reconciler.localcluster import hostdocker
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.config import PlaneState
from reconciler.render import workloadobjects
from tests.cluster.kubehelpers import wait_until
from tests.helpers import fit_on_one_node


@dataclass(frozen=True)
class Pod:
    """A pod as the kubelet reports it (the first container's state)."""

    name: str
    node: str
    ip: str | None
    ready: bool
    restarts: int
    container_id: str | None  # the model server's (or router's) container in containerd


def _pod(obj: dict[str, Any], container: str) -> Pod:
    status = obj.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    found = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == container), {}
    )
    cid = str(found.get("containerID") or "").partition("://")[2] or None
    return Pod(
        name=obj["metadata"]["name"],
        node=str((obj.get("spec") or {}).get("nodeName") or ""),
        ip=status.get("podIP"),
        ready=ready,
        restarts=int(found.get("restartCount") or 0),
        container_id=cid,
    )


class Pods:
    """The test namespace's model and router pods on the plane's real node."""

    def __init__(self, state: PlaneState, namespace: str, cluster: kube.Cluster) -> None:
        self.state = state
        self.namespace = namespace
        self.cluster = cluster

    def _list(self, selector: str) -> list[dict[str, Any]]:
        found = kube.list_objects(self.cluster, "v1", "Pod", self.namespace, selector)
        return [p for p in found if not p["metadata"].get("deletionTimestamp")]

    def model_pods(self, deployment: str) -> list[Pod]:
        selector = f"{workloadobjects.DEPLOYMENT_LABEL}={deployment}"
        pods = [_pod(p, workloadobjects.DEPLOYMENT_CONTAINER) for p in self._list(selector)]
        return sorted(pods, key=lambda p: p.name)

    def router_pods(self) -> list[Pod]:
        pods = [
            _pod(p, "router")
            for p in self._list("")
            if any(
                (c.get("command") or [])[:3] == ["reconciler", "router", "serve"]
                for c in p["spec"]["containers"]
            )
        ]
        return sorted(pods, key=lambda p: p.name)

    def router_url(self) -> str | None:
        """The router Service's ready pod, at its pod IP (what `reconciler score` uses)."""
        maps = kube.list_objects(
            self.cluster, "v1", "ConfigMap", self.namespace, score.ROUTER_CONFIG_LABEL
        )
        for config_map in maps:
            service = config_map["metadata"]["name"].removesuffix(score.CONFIG_SUFFIX)
            target = score.Target("", self.namespace, self.namespace, service, "none", None)
            url = score.find_router(self.cluster, target)
            if url is not None:
                return url
        return None

    def apply(self, root: Path, kubeconfig: str | None, timeout: str = "3m") -> str:
        """`reconciler apply ROOT --wait` (healthy: the kubelet's readiness probes pass); the
        URL of the router pod once it serves. The repo's instance types are first made to fit
        on the one real node (`fit_on_one_node`)."""
        fit_on_one_node(root)
        options = ["--kubeconfig", kubeconfig] if kubeconfig else []
        applied = CliRunner().invoke(
            cli.main, ["apply", str(root), "--wait", "--timeout", timeout, *options]
        )
        assert applied.exit_code == 0, applied.output + self.describe()
        url = wait_until(self.router_url, bool, "the router pod to serve", 60)
        assert url is not None
        return url

    def log(self, pod: str, container: str = workloadobjects.DEPLOYMENT_CONTAINER,
            previous: bool = False) -> str:  # fmt: skip
        return kube.pod_log(self.cluster, self.namespace, pod, container, previous=previous)

    def describe(self) -> str:
        """The namespace's pods and their states, for a failing assertion."""
        lines = []
        for obj in self._list(""):
            status = obj.get("status") or {}
            states = [
                f"{c.get('name')}: {c.get('state')} restarts {c.get('restartCount')}"
                for c in (status.get("initContainerStatuses") or [])
                + (status.get("containerStatuses") or [])
            ]
            lines.append(f"{obj['metadata']['name']} {status.get('phase')} {states}")
        return "\n".join(lines)

    def _container(self, pod: Pod) -> str:
        """The node container of the node that runs `pod`."""
        return rc.container_name(rc.plane_id(Path(self.state.state_dir)), pod.node)

    def in_node(self, pod: Pod, *args: str) -> str:
        """`ctr -n k8s.io ARGS` in the node that runs `pod`."""
        command = [
            hostdocker.docker_cli(), "exec", self._container(pod),
            f"{rc.NODE_BIN}/ctr", "-n", "k8s.io", *args,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def kill(self, pod: Pod) -> None:
        """SIGKILL to the pod's container's processes (a crash of the model server)."""
        assert pod.container_id is not None
        self.in_node(pod, "task", "kill", "--all", "--signal", "SIGKILL", pod.container_id)

    def signal_all(self, pod: Pod, signal: str) -> None:
        """`signal` to every process of the pod's container (SIGSTOP: a hung server)."""
        assert pod.container_id is not None
        self.in_node(pod, "task", "kill", "--all", "--signal", signal, pod.container_id)


def post(url: str, body: bytes, key: str | None, timeout: float = 30) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except (OSError, http.client.HTTPException) as err:
        # A dropped connection, or an answer cut short (a model container killed while its
        # answer went through the router), counts as a lost request.
        return 0, str(err).encode()


def primary_key(cluster: kube.Cluster, namespace: str, deployment: str) -> str:
    secret = kube.get_secret(cluster, namespace, f"{deployment}-auth")
    assert secret is not None
    return base64.b64decode(secret["data"]["primaryKey"]).decode()
