"""Build and cache the control-plane binary (``<repo>/controlplane``) once per pin.

The Go module in ``controlplane/`` pins one Kubernetes release (``k8s.io/kubernetes`` in its
go.mod) and one kwok release, and builds them, with kubectl of the same release, into a single
multi-call binary (:meth:`Binaries.kubectl` is the command line of that kubectl). This module builds
it with the machine's Go into ``<repo>/.cache/controlplane/<kubernetes version>/`` and records a
digest of the module's sources there; a later call reuses the binary unless the digest changed
(a new pin, or an edited main.go). Concurrent callers (two test runs, a test run and
``reconciler cluster up``) serialise on a file lock so the binary is built once.

Pure helpers (version parsing, digest, linker flags, progress text) are separate from the one
function that runs ``go`` (:func:`ensure_built`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

Progress = Callable[[str], None]
"""Receives one human-readable line of build progress."""

BINARY_NAME = "controlplane"
STAGES_NAME = "kwok-stages.yaml"
STAMP_NAME = "build.json"


class BuildError(RuntimeError):
    """The control-plane binary could not be built (no Go, download or compile failure)."""


KUBECTL = "kubectl"
"""The multi-call binary's component that is kubectl, at the plane's Kubernetes version."""


@dataclass(frozen=True)
class Binaries:
    """A built control plane: the multi-call binary and kwok's default stages beside it."""

    version: str
    binary: Path
    kwok_stages: Path

    def command(self, component: str, *args: str) -> list[str]:
        """The command line that runs one component of the binary with ``args``."""
        return [str(self.binary), component, *args]

    def kubectl(self, *args: str) -> list[str]:
        """The command line of kubectl (built with the plane, same version) with ``args``.

        It names no cluster: pass ``--kubeconfig`` or set ``KUBECONFIG``, e.g. to a running
        plane's ``PlaneState.kubeconfig``. The machine's own kubectl, if any, is never used.
        """
        return self.command(KUBECTL, *args)


def repo_root() -> Path:
    """The project checkout this package runs from (the folder holding ``controlplane/``).

    ``RECONCILER_REPO_ROOT`` overrides it, for an install that is not an editable checkout.
    """
    env = os.environ.get("RECONCILER_REPO_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def source_dir(root: Path | None = None) -> Path:
    """The Go module's folder."""
    return (root or repo_root()) / "controlplane"


def cache_root(root: Path | None = None) -> Path:
    """Where built binaries live, one folder per Kubernetes version (``.cache`` is ignored)."""
    env = os.environ.get("RECONCILER_CONTROLPLANE_CACHE")
    if env:
        return Path(env).resolve()
    return (root or repo_root()) / ".cache" / "controlplane"


_REQUIRE_RE = re.compile(r"^\s*(?:require\s+)?(\S+)\s+(v\d+\.\d+\.\d+\S*)", re.MULTILINE)


def pinned_versions(go_mod: str) -> dict[str, str]:
    """Module path -> version of every ``require`` line in a go.mod's text (replaces excluded)."""
    versions: dict[str, str] = {}
    for line in go_mod.splitlines():
        if "=>" in line:
            continue
        m = _REQUIRE_RE.match(line)
        if m:
            versions[m.group(1)] = m.group(2)
    return versions


def pinned_kubernetes_version(go_mod: str) -> str:
    """The ``k8s.io/kubernetes`` version a go.mod pins, e.g. ``v1.36.3``."""
    version = pinned_versions(go_mod).get("k8s.io/kubernetes")
    if version is None:
        raise BuildError("controlplane/go.mod does not require k8s.io/kubernetes")
    return version


def source_files(src: Path) -> list[Path]:
    """The files whose content decides the binary: go.mod, go.sum and the Go sources."""
    files = [src / "go.mod", src / "go.sum", *sorted(src.glob("*.go"))]
    return [f for f in files if f.is_file()]


def source_digest(contents: Iterable[tuple[str, bytes]]) -> str:
    """A digest over (name, content) pairs; the binary is rebuilt when it changes."""
    h = hashlib.sha256()
    for name, data in sorted(contents):
        h.update(name.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def ldflags(version: str) -> str:
    """Linker flags: strip symbols and stamp the Kubernetes version the binaries report."""
    m = re.match(r"v(\d+)\.(\d+)\.", version)
    if not m:
        raise BuildError(f"not a Kubernetes version: {version!r}")
    major, minor = m.group(1), m.group(2)
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


def build_command(go: str, output: Path, version: str) -> list[str]:
    """The ``go build`` command line (``-v`` lists packages as they compile: the progress)."""
    return [go, "build", "-v", "-trimpath", "-ldflags", ldflags(version), "-o", str(output), "."]


def build_env(base: dict[str, str]) -> dict[str, str]:
    """The environment for ``go``: the local toolchain only, no cgo, module mode."""
    env = dict(base)
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly -buildvcs=false").strip()
    return env


def progress_line(done: int, total: int, elapsed: float) -> str:
    """One line of build progress, e.g. ``compiled 420/2113 packages (20%) in 3m05s``."""
    pct = f" ({100 * done // total}%)" if total else ""
    of_total = f"/{total}" if total else ""
    minutes, seconds = divmod(int(elapsed), 60)
    return f"compiled {done}{of_total} packages{pct} in {minutes}m{seconds:02d}s"


def find_go() -> str:
    """The Go command: ``$GO``, then ``go`` on PATH, then ``/usr/local/go/bin/go``."""
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BuildError("Go is not installed (looked at $GO, PATH and /usr/local/go/bin/go)")


def _say(progress: Progress | None, line: str) -> None:
    if progress is not None:
        progress(line)


def run_checked(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-30:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def _compile(
    go: str, src: Path, output: Path, version: str, env: dict[str, str], progress: Progress | None
) -> None:
    _say(progress, "resolving Go packages (downloads modules on the first build on a machine) ...")
    total = count_packages(go, src, ["."], env)
    _say(progress, f"compiling {total} Go packages into one binary; this takes a while on 2 cores")
    run_go_build(build_command(go, output, version), src, env, total, progress)


def count_packages(go: str, src: Path, packages: list[str], env: dict[str, str]) -> int:
    """How many packages ``go build`` of ``packages`` compiles at most (the progress total)."""
    listed = run_checked([go, "list", "-deps", *packages], src, env, "go list")
    return sum(1 for line in listed.splitlines() if line.strip())


def run_go_build(
    cmd: list[str], cwd: Path, env: dict[str, str], total: int, progress: Progress | None
) -> None:
    """Run a ``go build -v`` (or ``go install -v``) command line, saying every 15 s how far it
    got; raise BuildError with the end of its output if it fails."""
    started = time.monotonic()
    last_report = started
    done = 0
    log_tail: list[str] = []
    # `with` closes the pipe: leaving it to the garbage collector is a ResourceWarning.
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log_tail = [*log_tail[-40:], line.rstrip()]
            # `go build -v` prints one import path per package it compiles; anything else is
            # output from a failing step and is kept for the error message.
            if line.strip() and " " not in line.strip():
                done += 1
            now = time.monotonic()
            if now - last_report >= 15:
                last_report = now
                _say(progress, progress_line(done, total, now - started))
        code = proc.wait()
    if code != 0:
        raise BuildError("go build failed (exit {}):\n{}".format(code, "\n".join(log_tail)))
    _say(progress, "go build done: " + progress_line(done, total, time.monotonic() - started))


def ensure_built(progress: Progress | None = None, root: Path | None = None) -> Binaries:
    """Return the built control plane, building it first if the pin changed or it is missing."""
    src = source_dir(root)
    go_mod = src / "go.mod"
    if not go_mod.is_file():
        raise BuildError(f"no Go module at {src} (expected the project's controlplane/ folder)")
    version = pinned_kubernetes_version(go_mod.read_text())
    digest = source_digest((f.name, f.read_bytes()) for f in source_files(src))
    out_dir = cache_root(root) / version
    binary = out_dir / BINARY_NAME
    stages = out_dir / STAGES_NAME
    stamp = out_dir / STAMP_NAME

    def current() -> bool:
        try:
            recorded = json.loads(stamp.read_text())
        except (OSError, ValueError):
            return False
        return bool(
            recorded.get("digest") == digest
            and binary.is_file()
            and stages.is_file()
            and os.access(binary, os.X_OK)
        )

    if current():
        return Binaries(version, binary, stages)

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same pin
        if current():
            return Binaries(version, binary, stages)
        go = find_go()
        _say(progress, f"building the Kubernetes {version} control plane from {src} with {go}")
        started = time.monotonic()
        tmp = out_dir / f".{BINARY_NAME}.tmp"
        env = build_env(dict(os.environ))
        _compile(go, src, tmp, version, env, progress)
        stages_yaml = run_checked([str(tmp), "kwok-stages"], src, env, "controlplane kwok-stages")
        stages.write_text(stages_yaml)
        os.replace(tmp, binary)
        seconds = round(time.monotonic() - started, 1)
        stamp.write_text(json.dumps({"digest": digest, "version": version, "seconds": seconds}))
        _say(progress, f"built {binary} in {seconds}s")
    return Binaries(version, binary, stages)
