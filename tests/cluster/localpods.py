"""The pod runtime of the local plane as the cluster tests drive it, and scoring through it.

`Runtime` is a `reconciler cluster runtime --namespace NS` process for the session's plane (the
`runtime` fixture in conftest.py starts one per test); `post` sends one scoring request and
`primary_key` reads a deployment's key from its Secret.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from reconciler import kube
from reconciler.cli import main as cli
from reconciler.localcluster import plane, podruntime
from reconciler.localcluster.config import PlaneState
from tests.cluster.kubehelpers import wait_until


class Runtime:
    """A `reconciler cluster runtime --namespace NS` process for the session's plane."""

    def __init__(self, state: PlaneState, namespace: str, log: Path) -> None:
        self.work_dir = plane.runtime_dir(Path(state.state_dir))
        command = [
            sys.executable, "-m", "reconciler", "cluster", "runtime",
            "--state-dir", state.state_dir, "--namespace", namespace,
        ]  # fmt: skip
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONWARNINGS": "error"},
            )

    def pods(self) -> list[dict[str, Any]]:
        return podruntime.read_pods(self.work_dir)

    def router_url(self) -> str | None:
        for pod in self.pods():
            if pod["kind"] == "router" and pod["ready"]:
                return str(pod["url"])
        return None

    def model_pods(self, deployment: str) -> list[dict[str, Any]]:
        return [p for p in self.pods() if p["kind"] == "model" and p["name"].startswith(deployment)]

    def apply(self, root: Path, kubeconfig: str | None, timeout: str = "3m") -> str:
        """`reconciler apply ROOT --wait` (healthy now means the servers answer their probes);
        the URL of the router pod once it serves."""
        options = ["--kubeconfig", kubeconfig] if kubeconfig else []
        applied = CliRunner().invoke(
            cli.main, ["apply", str(root), "--wait", "--timeout", timeout, *options]
        )
        assert applied.exit_code == 0, applied.output + self.log.read_text()[-3000:]
        url = wait_until(self.router_url, bool, "the router pod to serve", 60)
        assert url is not None
        return url

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


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
    except OSError as err:  # a dropped connection counts as a lost request
        return 0, str(err).encode()


def primary_key(cluster: kube.Cluster, namespace: str, deployment: str) -> str:
    secret = kube.get_secret(cluster, namespace, f"{deployment}-auth")
    assert secret is not None
    return base64.b64decode(secret["data"]["primaryKey"]).decode()
