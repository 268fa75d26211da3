"""The model server the local plane runs for model pods: `azmlinfsrv`, installed once.

A model deployment's container runs `azmlinfsrv --entry_script ... --port 5001`, the Azure ML
inference server the product's images carry (`azureml-inference-server-http` on PyPI, with the
`init()` / `run()` scoring-script contract). On the local plane there are no images, so this
module stands in for the image: it installs that server, at a pinned version, into a virtual
environment of its own under ``<repo>/.cache/modelserver/<version>/`` (its dependencies, such as
gunicorn, flask and a pinned pydantic, stay out of the reconciler's environment), once per pin,
under a file lock so that concurrent test runs share one install. ``pod runtime`` (in
``podruntime``) runs the server from there.

Setting ``RECONCILER_MODELSERVER_CACHE`` moves the cache folder.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

from reconciler.localcluster import build

PACKAGE = "azureml-inference-server-http"
VERSION = "1.5.1"
ENTRY_POINT = "azmlinfsrv"
INSTALL_TIMEOUT = 600.0

Progress = Callable[[str], None]


class InstallError(RuntimeError):
    """The model server could not be installed (no PyPI, a failed pip); the message says why."""


def cache_dir() -> Path:
    """``$RECONCILER_MODELSERVER_CACHE``, else ``<repo>/.cache/modelserver`` (ignored by git)."""
    env = os.environ.get("RECONCILER_MODELSERVER_CACHE")
    if env:
        return Path(env).resolve()
    return build.repo_root() / ".cache" / "modelserver"


def executable(root: Path | None = None) -> Path:
    """Where `azmlinfsrv` of the pinned version is (or will be) installed."""
    return (root or cache_dir()) / VERSION / "bin" / ENTRY_POINT


def ensure_installed(progress: Progress | None = None, root: Path | None = None) -> Path:
    """The path of `azmlinfsrv`, installing it first if this pin is not installed yet."""
    target = executable(root)
    home = target.parent.parent
    marker = home / ".installed"
    if marker.is_file() and target.is_file():
        return target
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing the same pin
        if marker.is_file() and target.is_file():
            return target
        if progress:
            progress(f"installing {PACKAGE}=={VERSION} (the model server) into {home}")
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        command = [
            str(home / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"{PACKAGE}=={VERSION}",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise InstallError(f"pip install {PACKAGE} took over {INSTALL_TIMEOUT:.0f}s") from err
        if done.returncode != 0 or not target.is_file():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise InstallError(f"pip install {PACKAGE}=={VERSION} failed:\n{tail}")
        marker.write_text(f"{PACKAGE}=={VERSION} for {sys.version.split()[0]}\n")
    return target
