"""Helpers for the router tests: backend processes, router configs, a running router, a client.

Backends are `backend.py` processes on free loopback ports; the router under test runs in the
test's own event loop (`run` drives a coroutine to completion), so tests can look at its pools
between requests; `serving` runs the `router serve` command instead, for what only a process
shows (signals, memory). Nothing in the HTTP path is mocked.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import uvloop
import yaml

from reconciler.router import config as routerconfig
from reconciler.router import proxy

BACKEND_SCRIPT = Path(__file__).with_name("backend.py")
T = TypeVar("T")


@dataclass
class BackendProcess:
    name: str
    port: int
    process: subprocess.Popen[str]
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_backend(
    name: str, port: int = 0, host: str = "127.0.0.1", *options: str
) -> BackendProcess:
    """A backend process; `options` are more of backend.py's flags (--log, --hold-ms)."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(BACKEND_SCRIPT),
            "--name",
            name,
            "--port",
            str(port),
            "--host",
            host,
            *options,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        process.wait()
        raise RuntimeError(f"backend {name} did not start: {line!r}")
    return BackendProcess(name, int(line.split()[1]), process, host)


def run(coro: Coroutine[Any, Any, T]) -> T:
    # The loop `reconciler router serve` runs on, so tests see its transports and timers.
    return uvloop.run(coro)


def deployment(name: str, backends: list[str], **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "backends": backends, "auth": {"mode": "none"}}
    entry.update(extra)
    return entry


def write_config(path: Path, deployments: list[dict[str, Any]], **top: Any) -> Path:
    """router.yaml on free ports (`admin_listen=None` leaves the admin port out)."""
    data: dict[str, Any] = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", **top}
    if data["admin_listen"] is None:
        del data["admin_listen"]
    data["deployments"] = deployments
    # Write then rename, as a ConfigMap update does: a reader never sees half a file.
    partial = path.with_suffix(".partial")
    partial.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    partial.replace(path)
    return path


@contextlib.asynccontextmanager
async def running(
    config_path: Path, probe_interval: float = 0.1, reload_interval: float = 0.05
) -> AsyncIterator[tuple[proxy.Router, str]]:
    """A router serving `config_path` on a free port, and its base URL."""
    router = proxy.Router(
        routerconfig.load(config_path), config_path, probe_interval, reload_interval
    )
    await router.start()
    try:
        yield router, f"http://127.0.0.1:{router.port}"
    finally:
        await router.stop()


@dataclass
class Serving:
    """A `reconciler router serve` process and the ports it said it listens on."""

    process: subprocess.Popen[str]
    port: int
    admin_port: int | None


@contextlib.contextmanager
def serving(config_path: Path, *options: str) -> Iterator[Serving]:
    """`reconciler router serve` on `config_path` as a process of its own (`options`: more of
    its flags), and the ports it says it listens on; killed on the way out if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "router", "serve", "--config", str(config_path),
         *options],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    has_admin = "admin_listen" in (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {})
    try:
        assert process.stderr is not None
        port, admin_port = 0, None
        for line in process.stderr:
            found = re.search(r"router listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
            found = re.search(r"router admin .* on 127\.0\.0\.1:(\d+)", line)
            if found:
                admin_port = int(found.group(1))
            if port and (admin_port or not has_admin):
                break
        assert port, "the router did not start"
        yield Serving(process, port, admin_port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def admin(router: proxy.Router) -> str:
    """The base URL of a running router's admin port (metrics, load reports)."""
    assert router.admin_port is not None, "the config has no admin_listen"
    return f"http://127.0.0.1:{router.admin_port}"


def session() -> aiohttp.ClientSession:
    # Enough connections for the concurrency tests; no pooled connection limit surprises.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


def score_url(base: str, name: str, query: str = "") -> str:
    return f"{base}/api/v1/service/{name}/score" + (f"?{query}" if query else "")
