"""Build and cache the programs a real node runs: containerd, kubelet, kube-proxy, pause.

Like the control plane (``build``), each part is built once per pin into
``<repo>/.cache/realnode/<part>-<version>/`` with a ``build.json`` stamp holding a digest of its
inputs; a later call reuses it unless the digest changed, and concurrent callers serialise on a
file lock in that folder. The parts:

- containerd, containerd-shim-runc-v2 and ctr, ``go install``-ed from the Go module proxy at
  ``nodepins.CONTAINERD_VERSION`` (static, no cgo);
- kubelet and kube-proxy, built inside ``controlplane/`` so they share its go.mod (the same
  Kubernetes version as the API server) and its Go build cache;
- the pause program (``build/pause/linux/pause.c`` of the same k8s.io/kubernetes module), linked
  statically with the host's C compiler, and its image as a ``docker save`` archive that each node
  imports into its containerd;
- CoreDNS (``clusterdns``), ``go install``-ed from the Go module proxy at
  ``nodepins.COREDNS_VERSION`` (static, no cgo), and its image (the binary alone) as an archive.

Pure helpers (digests, command lines) are separate from the functions that run the builds.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.localcluster import build, hostdocker, nodepins
from reconciler.localcluster.build import BuildError, Progress

STAMP_NAME = "build.json"
PAUSE_ARCHIVE = "pause.tar"
COREDNS_ARCHIVE = "coredns.tar"


@dataclass(frozen=True)
class NodePrograms:
    """The built programs of a real node: one folder of executables and the pause image."""

    bin_dir: Path
    pause_archive: Path
    pause_image: str
    kubernetes_version: str
    coredns_archive: Path
    coredns_image: str

    def binary(self, name: str) -> Path:
        return self.bin_dir / name


def cache_root(root: Path | None = None) -> Path:
    """Where the node parts live (``.cache`` is ignored by git)."""
    env = os.environ.get("RECONCILER_REALNODE_CACHE")
    if env:
        return Path(env).resolve()
    return (root or build.repo_root()) / ".cache" / "realnode"


def pause_image_name() -> str:
    return f"{nodepins.IMAGE_REGISTRY}/pause:{nodepins.PAUSE_TAG}"


def containerd_digest() -> str:
    return build.source_digest(
        [
            ("module", nodepins.CONTAINERD_MODULE.encode()),
            ("version", nodepins.CONTAINERD_VERSION.encode()),
            ("commands", " ".join(nodepins.CONTAINERD_COMMANDS).encode()),
            ("tags", " ".join(nodepins.CONTAINERD_BUILD_TAGS).encode()),
        ]
    )


def containerd_install_command(go: str) -> list[str]:
    """``go install`` of containerd's three commands at the pinned version, static and stamped."""
    module, version = nodepins.CONTAINERD_MODULE, nodepins.CONTAINERD_VERSION
    ldflags = f"-s -w -X {module}/version.Version={version}"
    return [
        go, "install", "-v", "-trimpath",
        "-tags", " ".join(nodepins.CONTAINERD_BUILD_TAGS),
        "-ldflags", ldflags,
        *(f"{module}/cmd/{name}@{version}" for name in nodepins.CONTAINERD_COMMANDS),
    ]  # fmt: skip


def containerd_env(base: dict[str, str], gobin: Path) -> dict[str, str]:
    """``go install pkg@version`` runs outside any module: no -mod flag, its own GOBIN."""
    env = build.build_env(base)
    env["GOFLAGS"] = "-buildvcs=false"
    env["GOBIN"] = str(gobin)
    return env


def kube_digest(go_mod: bytes, go_sum: bytes) -> str:
    return build.source_digest(
        [
            ("go.mod", go_mod),
            ("go.sum", go_sum),
            ("packages", " ".join(nodepins.KUBE_NODE_PACKAGES).encode()),
        ]
    )


def kube_build_command(go: str, out_dir: Path, version: str) -> list[str]:
    """One ``go build`` of kubelet and kube-proxy into ``out_dir`` (``-o`` a folder)."""
    return [
        go, "build", "-v", "-trimpath", "-ldflags", build.ldflags(version),
        "-o", f"{out_dir}{os.sep}", *nodepins.KUBE_NODE_PACKAGES,
    ]  # fmt: skip


def coredns_image_name() -> str:
    return f"{nodepins.IMAGE_REGISTRY}/coredns:{nodepins.COREDNS_VERSION}"


def coredns_digest() -> str:
    return build.source_digest(
        [
            ("module", nodepins.COREDNS_MODULE.encode()),
            ("version", nodepins.COREDNS_VERSION.encode()),
        ]
    )


def coredns_install_command(go: str) -> list[str]:
    """``go install`` of CoreDNS as released (every plugin of its plugin.cfg), static."""
    module, version = nodepins.COREDNS_MODULE, nodepins.COREDNS_VERSION
    ldflags = f"-s -w -X {module}/coremain.GitCommit={version}"
    return [go, "install", "-v", "-trimpath", "-ldflags", ldflags, f"{module}@{version}"]


def pause_cflags() -> list[str]:
    """The flags of build/pause/Makefile, version stamp included."""
    return ["-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{nodepins.PAUSE_TAG}-mlext"]


def pause_digest(pause_c: bytes) -> str:
    return build.source_digest(
        [("pause.c", pause_c), ("cflags", " ".join(pause_cflags()).encode())]
    )


def _stamp_current(out_dir: Path, digest: str, outputs: Sequence[str]) -> bool:
    try:
        recorded = json.loads((out_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("digest") == digest and all((out_dir / o).is_file() for o in outputs)


def cached_build(
    out_dir: Path,
    digest: str,
    outputs: Sequence[str],
    make: Callable[[Path], None],
    what: str,
    progress: Progress | None,
) -> float | None:
    """Run ``make(tmp)`` to build ``outputs`` unless ``out_dir`` holds them for ``digest``.

    ``make`` writes the outputs into a fresh temporary folder; they are moved into ``out_dir``
    only when all are there, so a failed or interrupted build leaves the old ones. Returns the
    build's seconds, or None when the cache was current.
    """
    say = progress or (lambda _line: None)
    if _stamp_current(out_dir, digest, outputs):
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same pin
        if _stamp_current(out_dir, digest, outputs):
            return None
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
            make(Path(tmp))
            missing = [o for o in outputs if not (Path(tmp) / o).is_file()]
            if missing:
                raise BuildError(f"building {what} made no {', '.join(missing)}")
            for name in outputs:
                os.replace(Path(tmp) / name, out_dir / name)
        seconds = round(time.monotonic() - started, 1)
        (out_dir / STAMP_NAME).write_text(json.dumps({"digest": digest, "seconds": seconds}))
        say(f"built {what} in {_minutes(seconds)}")
        return seconds


def _minutes(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


# ---------------------------------------------------------------------------------------------
# the builds


def _go_install(
    what: str,
    command: Callable[[str], list[str]],
    minutes: str,
    tmp: Path,
    progress: Progress | None,
) -> None:
    """`command(go)`, a ``go install`` from the Go module proxy, run with its binaries going to
    `tmp`; `minutes` is what the first build on a machine takes, said before it starts."""
    go = build.find_go()
    build._say(
        progress,
        f"building {what} from the Go module proxy "
        f"(first time on a machine: about {minutes} on 2 cores)",
    )
    env = containerd_env(dict(os.environ), tmp)
    # Hundreds of packages, uncounted: the exact count would need a module download first.
    build.run_go_build(command(go), tmp, env, 0, progress)


def ensure_containerd(progress: Progress | None = None, root: Path | None = None) -> Path:
    """containerd, its runc shim and ctr at the pinned version; returns their folder."""
    out_dir = cache_root(root) / f"containerd-{nodepins.CONTAINERD_VERSION}"

    def make(tmp: Path) -> None:
        what = f"containerd {nodepins.CONTAINERD_VERSION}"
        _go_install(what, containerd_install_command, "1.5 minutes", tmp, progress)

    cached_build(
        out_dir, containerd_digest(), nodepins.CONTAINERD_COMMANDS, make, "containerd", progress
    )
    return out_dir


def ensure_kube_programs(progress: Progress | None = None, root: Path | None = None) -> Path:
    """kubelet and kube-proxy at the control plane's Kubernetes version; returns their folder."""
    src = build.source_dir(root)
    go_mod, go_sum = (src / "go.mod").read_bytes(), (src / "go.sum").read_bytes()
    version = build.pinned_kubernetes_version(go_mod.decode())
    out_dir = cache_root(root) / f"kubernetes-{version}"
    names = [p.rsplit("/", 1)[1] for p in nodepins.KUBE_NODE_PACKAGES]

    def make(tmp: Path) -> None:
        go = build.find_go()
        env = build.build_env(dict(os.environ))
        total = build.count_packages(go, src, list(nodepins.KUBE_NODE_PACKAGES), env)
        build._say(
            progress,
            f"building kubelet and kube-proxy {version} ({total} Go packages, most of them "
            "compiled already for the control plane: about 20-60 s on 2 cores)",
        )
        build.run_go_build(kube_build_command(go, tmp, version), src, env, total, progress)

    cached_build(
        out_dir, kube_digest(go_mod, go_sum), names, make, "kubelet and kube-proxy", progress
    )
    return out_dir


def kubernetes_module_dir(root: Path | None = None) -> Path:
    """The k8s.io/kubernetes module's folder in the Go module cache (downloaded if needed)."""
    src = build.source_dir(root)
    env = build.build_env(dict(os.environ))
    out = build.run_checked(
        [build.find_go(), "mod", "download", "-json", "k8s.io/kubernetes"],
        src,
        env,
        "go mod download",
    )
    try:
        return Path(json.loads(out)["Dir"])
    except (ValueError, KeyError) as exc:
        raise BuildError(
            f"go mod download gave no folder for k8s.io/kubernetes: {out[:300]}"
        ) from exc


def _tar_single_file(binary: Path, archive: Path, name: str) -> None:
    with tarfile.open(archive, "w") as tar:
        info = tar.gettarinfo(str(binary), arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o755
        with open(binary, "rb") as f:
            tar.addfile(info, f)


def ensure_pause(progress: Progress | None = None, root: Path | None = None) -> Path:
    """The pause image as a ``docker save`` archive (for ``ctr images import``); returns it.

    Needs Docker (``docker import`` makes the image from the static binary).
    """
    pause_c = kubernetes_module_dir(root) / "build" / "pause" / "linux" / "pause.c"
    if not pause_c.is_file():
        raise BuildError(f"no pause.c in the k8s.io/kubernetes module ({pause_c})")
    out_dir = cache_root(root) / f"pause-{nodepins.PAUSE_TAG}"
    image = pause_image_name()

    def make(tmp: Path) -> None:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise BuildError("no C compiler (cc) to build the pause program; apt-get install gcc")
        binary = tmp / "pause"
        build.run_checked(
            [cc, *pause_cflags(), "-o", str(binary), str(pause_c)],
            tmp,
            dict(os.environ),
            "cc pause.c",
        )
        _image_archive(binary, tmp, image, PAUSE_ARCHIVE)

    cached_build(
        out_dir,
        pause_digest(pause_c.read_bytes()),
        [PAUSE_ARCHIVE],
        make,
        "the pause image",
        progress,
    )
    return out_dir / PAUSE_ARCHIVE


def _image_archive(binary: Path, tmp: Path, image: str, archive: str) -> None:
    """An image of one static binary at ``/<name>`` as its entrypoint, saved to ``tmp/archive``."""
    rootfs = tmp / "rootfs.tar"
    _tar_single_file(binary, rootfs, binary.name)
    try:
        hostdocker.docker(
            "import", "--change", f'ENTRYPOINT ["/{binary.name}"]', str(rootfs), image
        )
        hostdocker.docker("save", "-o", str(tmp / archive), image)
    except hostdocker.DockerUnavailable as exc:
        raise BuildError(f"making the image {image} failed: {exc}") from exc
    rootfs.unlink()


def ensure_coredns(progress: Progress | None = None, root: Path | None = None) -> Path:
    """CoreDNS's image as a ``docker save`` archive (the binary beside it); returns the archive.

    Needs Docker (``docker import``)."""
    out_dir = cache_root(root) / f"coredns-{nodepins.COREDNS_VERSION}"

    def make(tmp: Path) -> None:
        what = f"CoreDNS {nodepins.COREDNS_VERSION}"
        _go_install(what, coredns_install_command, "3 minutes", tmp, progress)
        _image_archive(tmp / "coredns", tmp, coredns_image_name(), COREDNS_ARCHIVE)

    cached_build(out_dir, coredns_digest(), ["coredns", COREDNS_ARCHIVE], make, "CoreDNS", progress)
    return out_dir / COREDNS_ARCHIVE


def _link_into(bin_dir: Path, sources: Sequence[Path]) -> None:
    """Hard links (copies across file systems) of ``sources`` in ``bin_dir``, each replaced
    atomically."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for src in sources:
        dest = bin_dir / src.name
        tmp = bin_dir / f".{src.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dest)


def ensure_built(progress: Progress | None = None, root: Path | None = None) -> NodePrograms:
    """Every program of a real node, building what is missing; returns where they are.

    The executables are gathered into one folder (``bin``), which each node mounts read-only.
    """
    containerd_dir = ensure_containerd(progress, root)
    kube_dir = ensure_kube_programs(progress, root)
    pause = ensure_pause(progress, root)
    coredns = ensure_coredns(progress, root)
    version = build.pinned_kubernetes_version((build.source_dir(root) / "go.mod").read_text())
    bin_dir = cache_root(root) / "bin"
    names = [p.rsplit("/", 1)[1] for p in nodepins.KUBE_NODE_PACKAGES]
    lock_path = cache_root(root) / ".bin.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _link_into(
            bin_dir,
            [containerd_dir / n for n in nodepins.CONTAINERD_COMMANDS]
            + [kube_dir / n for n in names],
        )
    return NodePrograms(bin_dir, pause, pause_image_name(), version, coredns, coredns_image_name())
