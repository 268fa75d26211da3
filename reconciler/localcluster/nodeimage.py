"""The real node's image: a Debian root file system made by mmdebstrap, imported into Docker.

No container registry is reachable, so the node's image is built here: ``mmdebstrap`` makes a
minimal Debian (``nodepins.DEBIAN_SUITE``) with the packages a node needs (runc, the CNI plugins,
iptables, ...) as a tar, and ``docker import`` turns it into ``mlext.local/node:<digest>``, the
digest being that of its inputs, so a changed pin makes a new image and an unchanged one is never
rebuilt. The node's programs (containerd, kubelet, ...) are not in it: each node mounts them from
``nodebuild``'s cache, so a new kubelet needs no new image.

The same image is a plain Debian for pods too (it has a shell and coreutils): tests load it into a
node under its own name (``realnode.load_image``) to run a command in a real container.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from reconciler.localcluster import build, hostdocker, nodebuild, nodepins
from reconciler.localcluster.build import BuildError, Progress

# Leave out what no node reads: manuals, docs and translations (a third of minbase's size).
_DPKG_EXCLUDES = (
    "/usr/share/man/*",
    "/usr/share/doc/*",
    "/usr/share/locale/*",
    "/usr/share/info/*",
)


def mmdebstrap_command(
    output: Path,
    packages: tuple[str, ...] = nodepins.NODE_PACKAGES,
    hooks: tuple[str, ...] = (),
) -> list[str]:
    """The mmdebstrap command line that writes a root file system (the node's by default) of
    Debian's minimal base plus ``packages``, then runs the shell commands ``hooks`` on it (``$1``
    is its folder), as a tar."""
    return [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        *(f"--dpkgopt=path-exclude={p}" for p in _DPKG_EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        *(f"--customize-hook={hook}" for hook in hooks),
        nodepins.DEBIAN_SUITE,
        str(output),
    ]


def image_digest() -> str:
    """A digest of everything that decides the image's content."""
    return build.source_digest([("mmdebstrap", " ".join(mmdebstrap_command(Path("x"))).encode())])


def image_name(digest: str | None = None) -> str:
    """``mlext.local/node:<first 12 hex digits of the digest>``."""
    return f"{nodepins.IMAGE_REGISTRY}/node:{(digest or image_digest())[:12]}"


def image_exists(name: str) -> bool:
    proc = hostdocker.docker("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return proc.returncode == 0


def ensure_image(progress: Progress | None = None) -> str:
    """The node image's name, building it first if Docker does not have it."""
    return ensure_debian_image(
        image_name(), nodepins.NODE_PACKAGES, ('CMD ["/bin/bash"]',), "the node image", progress
    )


def ensure_debian_image(
    name: str,
    packages: tuple[str, ...],
    changes: tuple[str, ...],
    what: str,
    progress: Progress | None = None,
    hooks: tuple[str, ...] = (),
) -> str:
    """Image ``name``: Debian's minimal base plus ``packages`` made by mmdebstrap (with its
    customize ``hooks``) and imported with the Dockerfile instructions ``changes``; built only if
    Docker does not have it (the name carries the digest of its inputs). Also the base of the
    pods' Python images (``localimages``)."""
    if image_exists(name):
        return name
    lock_dir = nodebuild.cache_root()
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".node-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it
        if image_exists(name):
            return name
        if shutil.which("mmdebstrap") is None:
            raise BuildError(
                f"mmdebstrap is not installed (it builds {what}'s root file system); "
                "apt-get install mmdebstrap"
            )
        say = progress or (lambda _line: None)
        say(
            f"building {what} {name}: Debian {nodepins.DEBIAN_SUITE} with "
            f"{len(packages)} packages via mmdebstrap (first time: about 1-2 minutes)"
        )
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=lock_dir, prefix=".rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            proc = subprocess.run(
                mmdebstrap_command(rootfs, packages, hooks),
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
                raise BuildError(f"mmdebstrap failed (exit {proc.returncode}):\n{tail}")
            try:
                changed = [arg for change in changes for arg in ("--change", change)]
                hostdocker.docker("import", *changed, str(rootfs), name, timeout=600)
            except hostdocker.DockerUnavailable as exc:
                raise BuildError(f"importing {what} failed: {exc}") from exc
        say(f"built {what} {name} in {time.monotonic() - started:.0f}s")
    return name
