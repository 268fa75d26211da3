"""The host's Docker daemon and the Debian tools real nodes need: check, install, start.

Real nodes (``realnode``) are containers run by Docker, and their root file system is built with
``mmdebstrap``. This module makes sure both are there: when ``docker info`` does not answer it
installs Debian's ``docker.io`` and ``mmdebstrap`` with apt-get (only as root; anyone else is told
the command to run), starts ``dockerd`` in the background with its log in the project's ``.cache``
and waits until ``docker info`` answers. Where Docker cannot run, :class:`DockerUnavailable` says
why and what to do; callers then carry on without real nodes.

Pure parts (which packages, the apt and dockerd command lines, the advice text) are separate from
the functions that run them (:func:`ensure_docker`, :func:`docker`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.localcluster import build

Progress = Callable[[str], None]

# Debian's packages the host needs: the daemon (it pulls in runc, containerd 1.6 for itself and
# iptables), docker-init (tini) for `docker run --init`, and mmdebstrap for root file systems.
HOST_PACKAGES = ("docker.io", "tini", "mmdebstrap")
# Commands those packages provide; any one missing means the packages are installed again.
HOST_COMMANDS = ("dockerd", "mmdebstrap", "docker-init")

DAEMON_READY_TIMEOUT = 60.0


class DockerUnavailable(RuntimeError):
    """Docker cannot run on this host; the message says why and what to do about it."""


def install_advice() -> str:
    """What a person who is not root runs to get what real nodes need."""
    return (
        f"sudo apt-get update && sudo apt-get install -y {' '.join(HOST_PACKAGES)} "
        "&& sudo dockerd &  (or `sudo systemctl start docker`)"
    )


def apt_commands(packages: Sequence[str] = HOST_PACKAGES) -> list[list[str]]:
    """The apt-get command lines that install ``packages`` (the lists first: a fresh machine's
    may be missing or old)."""
    return [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
    ]


def dockerd_command(data_root: Path | None = None) -> list[str]:
    """dockerd with Debian's defaults (overlay2, cgroupfs on this kernel's cgroup v1)."""
    cmd = ["dockerd"]
    if data_root is not None:
        cmd.append(f"--data-root={data_root}")
    return cmd


def docker_cli() -> str:
    """The docker client to use: Debian's (same release as the daemon) before any other on PATH."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return "docker"


def log_dir() -> Path:
    """Where dockerd's log goes when this module starts it: ``<repo>/.cache/docker``."""
    return build.repo_root() / ".cache" / "docker"


def docker(
    *args: str,
    check: bool = True,
    timeout: float | None = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS`` and return the finished process (stdout and stderr as text)."""
    proc = subprocess.run(
        [docker_cli(), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise DockerUnavailable(f"`docker {' '.join(args[:3])}` failed: {detail}")
    return proc


def daemon_ready() -> bool:
    """True when a Docker daemon answers ``docker info``."""
    if shutil.which(docker_cli()) is None and not Path(docker_cli()).exists():
        return False
    try:
        proc = subprocess.run(
            [docker_cli(), "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def _missing_commands() -> list[str]:
    return [c for c in HOST_COMMANDS if shutil.which(c) is None]


def _install(progress: Progress) -> None:
    if os.geteuid() != 0:
        raise DockerUnavailable(
            "Docker's daemon is not running and this is not root, so it cannot be installed "
            f"here; run: {install_advice()}"
        )
    if shutil.which("apt-get") is None:
        raise DockerUnavailable(
            "Docker's daemon is not running and there is no apt-get to install Debian's "
            f"{', '.join(HOST_PACKAGES)}; install Docker and mmdebstrap and start dockerd"
        )
    started = time.monotonic()
    progress(f"installing Debian's {', '.join(HOST_PACKAGES)} with apt-get (once per machine)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in apt_commands():
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise DockerUnavailable(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    progress(f"installed in {time.monotonic() - started:.0f}s")


def _start_daemon(progress: Progress) -> None:
    if os.geteuid() != 0:
        raise DockerUnavailable(
            "Docker is installed but its daemon is not running, and only root can start it; "
            "run: sudo dockerd &  (or `sudo systemctl start docker`)"
        )
    logs = log_dir()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "dockerd.log"
    progress(f"starting dockerd in the background (log {log})")
    with open(log, "ab") as out:
        # `setsid --fork`: the daemon runs in its own session (a Ctrl-C at the terminal does
        # not reach it) as a child of init, not of this process, so it outlives `cluster up`
        # and leaves no running Popen behind to be collected (a ResourceWarning under pytest).
        subprocess.run(
            ["setsid", "--fork", *dockerd_command()],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            close_fds=True,
            check=True,
        )
    deadline = time.monotonic() + DAEMON_READY_TIMEOUT
    while time.monotonic() < deadline:
        if daemon_ready():
            return
        time.sleep(0.5)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise DockerUnavailable(
        f"dockerd did not answer within {DAEMON_READY_TIMEOUT:.0f}s; last lines of {log}:\n{tail}"
    )


def ensure_docker(progress: Progress | None = None) -> None:
    """Make Docker's daemon (and mmdebstrap) usable, installing and starting them if needed.

    Raises DockerUnavailable, saying what to do, where that cannot be done (not root, no
    apt-get, the daemon does not start).
    """
    say = progress or (lambda _line: None)
    missing = _missing_commands()
    if daemon_ready() and not missing:
        return
    if missing:
        _install(say)
    if not daemon_ready():
        _start_daemon(say)


def remove_labelled(label: str) -> None:
    """Remove every container (running or not) and network that carries ``label`` (k=v)."""
    ids = docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids)
    nets = docker("network", "ls", "-q", "--filter", f"label={label}").stdout.split()
    if nets:
        docker("network", "rm", *nets)
