"""The model server the local plane runs for model pods: `azmlinfsrv`, installed once.

A model deployment's container runs `azmlinfsrv --entry_script ... --port 5001`, the Azure ML
inference server the product's images carry (`azureml-inference-server-http` on PyPI, with the
`init()` / `run()` scoring-script contract). On the local plane there are no images, so this
module stands in for the image: it installs that server, at a pinned version, into a virtual
environment of its own under ``<repo>/.cache/modelserver/<version>/`` (its dependencies, such as
gunicorn, flask and a pinned pydantic, stay out of the reconciler's environment), once per pin,
under a file lock so that concurrent test runs share one install. ``pod runtime`` (in
``podruntime``) runs the server from there, or, for a deployment whose conda file lists pip
packages, from an environment of its own that holds the server too (``ensure_environment``,
under ``envs/``).

Setting ``RECONCILER_MODELSERVER_CACHE`` moves the cache folder.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import venv
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.localcluster import build
from reconciler.render import workloadobjects

PACKAGE = "azureml-inference-server-http"
VERSION = workloadobjects.MODEL_SERVER_VERSION
ENTRY_POINT = workloadobjects.MODEL_SERVER
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
        _pip_install(home / "bin" / "python", [f"{PACKAGE}=={VERSION}"])
        if not target.is_file():
            raise InstallError(f"pip install {PACKAGE}=={VERSION} installed no {ENTRY_POINT}")
        marker.write_text(f"{PACKAGE}=={VERSION} for {sys.version.split()[0]}\n")
    return target


def ensure_environment(server: Path, requirements: Sequence[str], key: str) -> Path:
    """The Python of an environment that is the model server plus `requirements` (a conda
    file's packages, `condafile`), installing it first; environments are shared by `key`.

    The environment is a virtual environment of its own into which pip installs the server at
    its pin together with the requirements, resolved as one set, as a conda file's environment
    is in an image. (An environment layered on the server's, sharing its packages, broke
    servers: mlflow pulled an opentelemetry-sdk newer than the server's exporter can import, and
    pinning the server's packages instead made pip fall back to an mlflow years old.)
    `server`: the installed `azmlinfsrv`, whose folder holds the environments."""
    home = server.parent.parent / "envs" / key
    python = home / "bin" / "python"
    marker = home / ".installed"
    if marker.is_file():
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file():
            return python
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        _pip_install(python, [f"{PACKAGE}=={VERSION}", *requirements])
        marker.write_text("\n".join(requirements) + "\n")
    return python


def _pip_install(python: Path, requirements: list[str]) -> None:
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    what = " ".join(requirements)
    # pip's own deprecation warnings are not the caller's: a PYTHONWARNINGS=error (the tests')
    # must not turn them into a failed install.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    try:
        done = subprocess.run(
            [*command, *requirements],
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise InstallError(f"pip install {what} took over {INSTALL_TIMEOUT:.0f}s") from err
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise InstallError(f"pip install {what} failed:\n{tail}")
