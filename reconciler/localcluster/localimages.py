"""Images for the real nodes' pods, without a registry: build, or pull, then load.

Two kinds of image: the project's own (``Dockerfile``: the router and the controller run it) and
the images the manifests name (``standins.STANDINS``). Each is pulled when this machine can pull
it (``docker pull`` succeeds; a machine with a registry uses real images); otherwise it is built
here. Both are built on one Python base that mmdebstrap makes from Debian's packages
(``nodepins.PYTHON_BASE_PACKAGES``, via ``nodeimage.ensure_debian_image``): the project's image
from the Dockerfile with that base as its ``PYTHON_IMAGE`` build argument, the stand-ins from the
recipes' Dockerfiles. Every image is named by the digest of its inputs, so an unchanged one is
never rebuilt.

:func:`provide` loads them into a plane's real nodes (``realnode.load_image``) under the names
the manifests and the render use (``ctr images tag``: one stand-in image serves several names)
and records in the plane's folder what each name is, a stand-in or a real image, for
``cluster status`` (:func:`loaded`), with the build and load times.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler import buildinfo
from reconciler.localcluster import (
    build,
    hostdocker,
    nodebuild,
    nodeimage,
    nodepins,
    realnode,
    standins,
)
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.build import BuildError
from reconciler.model import components

Progress = Callable[[str], None]

BUILD_TIMEOUT = 1800.0
PULL_TIMEOUT = 120.0
# The Dockerfile's base, and the build argument that replaces it.
DOCKERFILE_BASE = "python:3.11-slim"
BASE_ARG = "PYTHON_IMAGE"
# What the project's image is labelled with: the digest of what went into it.
SOURCE_LABEL = "io.mlext.source-digest"
# What goes into the project's image (the Dockerfile's COPY lines and the Dockerfile itself).
# Python's ssl, requests and pip (whose own bundle is certifi's) read the system's bundle.
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TRUST_ENV = {
    "SSL_CERT_FILE": SYSTEM_BUNDLE,
    "REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE,
    "PIP_CERT": SYSTEM_BUNDLE,
}
PROJECT_INPUTS = (
    "Dockerfile",
    "pyproject.toml",
    "README.md",
    "hatch_build.py",
    "reconciler",
    "schemas",
    "templates",
)
# The build argument that carries the commit into the image (the build context has no .git).
COMMIT_ARG = "RECONCILER_COMMIT"


@dataclass(frozen=True)
class Provided:
    """One image name a plane's pods can run: the Docker image behind it (``local``: the name
    itself for a real or the project's image), whether it is a stand-in, and the seconds it took
    to build (0 when cached or pulled) and to load into the nodes."""

    name: str
    local: str
    standin: bool
    recipe: str = ""
    build_seconds: float = 0.0
    load_seconds: float = 0.0


def project_image() -> str:
    """The name the render gives the router's (and the controller's) image."""
    (router,) = [c for c in components.COMPONENTS if c.name == "azureml-fe-v2"]
    return components.image(router)


def _say(progress: Progress | None) -> Progress:
    return progress or (lambda _line: None)


def _docker(*args: str, timeout: float | None = 300) -> subprocess.CompletedProcess[str]:
    return hostdocker.docker(*args, check=False, timeout=timeout)


def _label(image: str, label: str) -> str | None:
    """The value of ``label`` on a Docker image; None when the image is not there."""
    proc = _docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', image)
    if proc.returncode != 0:
        return None
    value = proc.stdout.strip()
    return "" if value == "<no value>" else value


def real_image_available(name: str, progress: Progress | None = None) -> bool:
    """True when Docker has ``name`` as a real image (not one of our stand-ins) or can pull it."""
    if _label(name, standins.STANDIN_LABEL) == "":  # there, and no stand-in of ours
        return True
    try:
        proc = _docker("pull", name, timeout=PULL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False
    if proc.returncode == 0:
        _say(progress)(f"pulled {name}")
        return True
    return False


def host_ca_bundle() -> Path | None:
    """The certificate bundle this host trusts (``SSL_CERT_FILE``, else Debian's), if any."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def python_base_hooks(bundle: Path | None) -> tuple[str, ...]:
    """mmdebstrap hooks that make the base trust what the host trusts: PyPI may be reached
    through a proxy whose certificate authority only the host's bundle holds (so it is here),
    and pip and the model server's installs in the images must reach it too."""
    if bundle is None:
        return ()
    target = "$1/usr/local/share/ca-certificates/mlext-host-bundle.crt"
    return (f'cp {shlex.quote(str(bundle))} "{target}"', 'chroot "$1" update-ca-certificates')


def ensure_python_base(progress: Progress | None = None) -> str:
    """The Python base image (Debian's Python from mmdebstrap), built once per pin (and per
    host certificate bundle)."""
    packages = nodepins.PYTHON_BASE_PACKAGES
    bundle = host_ca_bundle()
    hooks = python_base_hooks(bundle)
    command = " ".join(nodeimage.mmdebstrap_command(Path("x"), packages, hooks))
    inputs = [("mmdebstrap", command.encode())]
    if bundle is not None:
        inputs.append(("ca-bundle", bundle.read_bytes()))
    return nodeimage.ensure_debian_image(
        standins.python_base_name(build.source_digest(inputs)),
        packages,
        ('CMD ["python3"]', f"ENV {' '.join(f'{k}={v}' for k, v in TRUST_ENV.items())}"),
        "the Python base image",
        progress,
        hooks,
    )


def _docker_build(name: str, args: list[str], stdin: str | None, what: str) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        [hostdocker.docker_cli(), "build", "--tag", name, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT,
        # The classic builder: Debian's docker.io has no buildx.
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    if proc.returncode != 0:
        # The classic builder prints the failed step's output on stdout, its verdict on stderr.
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BuildError(f"building {what} {name} failed (exit {proc.returncode}):\n{tail}")
    return round(time.monotonic() - started, 1)


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One image build at a time on this machine: test processes run side by side, and a
    build that untags the images it replaces must not untag one another process is loading."""
    folder = nodebuild.cache_root()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".pod-images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# A build younger than this may be another checkout's on the same machine (a worktree, a test
# run of other sources), about to be loaded into its plane's nodes: it is left alone.
STALE_AFTER = timedelta(hours=1)


def _untag_older(image: str) -> None:
    """Untag the other tags of ``image``'s repository built over STALE_AFTER ago (earlier
    builds, named by the digests of what they were built from), so that their layers can go."""
    repository = image.rsplit(":", 1)[0]
    listed = _docker(
        "images", "--format", "{{.Repository}}:{{.Tag}} {{.CreatedAt}}", repository
    ).stdout.splitlines()
    now = datetime.now(UTC)
    stale = []
    for line in listed:
        tag, _, created = line.partition(" ")
        # CreatedAt reads "2026-12-06 19:40:01 +0000 UTC".
        when = datetime.strptime(" ".join(created.split()[:3]), "%Y-%m-%d %H:%M:%S %z")
        if tag != image and now - when > STALE_AFTER:
            stale.append(tag)
    if stale:
        _docker("rmi", *stale)


def ensure_standin(key: str, progress: Progress | None = None) -> tuple[str, float]:
    """Recipe ``key``'s image (its parents first), built if Docker lacks it; its name and the
    seconds spent building (0 when every image was there)."""
    say = _say(progress)
    base = ensure_python_base(progress)
    spent = 0.0
    for step in standins.build_order({key}):
        recipe = standins.RECIPES[step]
        name = standins.local_name(step, base)
        if nodeimage.image_exists(name):
            continue
        parent = base if recipe.parent is None else standins.local_name(recipe.parent, base)
        with _build_lock(), tempfile.TemporaryDirectory(prefix="mlext-standin-") as context:
            if nodeimage.image_exists(name):  # built while this process waited
                continue
            say(f"building the stand-in image {name} ({recipe.what})")
            folder = Path(context)
            (folder / "Dockerfile").write_text(standins.dockerfile(recipe, parent))
            for file_name, data in standins.context_files(recipe).items():
                (folder / file_name).write_bytes(data)
            seconds = _docker_build(name, [context], None, f"the stand-in {step}")
            _untag_older(name)
        say(f"built {name} in {seconds:.0f}s")
        spent += seconds
    return standins.local_name(key, base), spent


def project_source_digest(root: Path) -> str:
    """A digest of the files the Dockerfile copies into the project's image (and of itself)."""
    contents: list[tuple[str, bytes]] = []
    for entry in PROJECT_INPUTS:
        path = root / entry
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                contents.append((str(f.relative_to(root)), f.read_bytes()))
    return build.source_digest(contents)


def project_local_name(digest: str) -> str:
    """The project's image under a name of its sources' digest: a node holding the render's name
    may hold an older build of it, never an older build under this name."""
    return f"{nodepins.IMAGE_REGISTRY}/reconciler:{digest[:12]}"


def ensure_project_image(progress: Progress | None = None) -> Provided:
    """The project's image under the name the render uses (and under its sources' digest),
    built from the repo's Dockerfile if Docker lacks this source's build: on
    ``python:3.11-slim`` where it can be pulled, else on the Python base."""
    say = _say(progress)
    root = build.repo_root()
    if not (root / "Dockerfile").is_file():
        raise BuildError(f"no Dockerfile in {root}: the project's image is built from a checkout")
    name = project_image()
    digest = project_source_digest(root)
    local = project_local_name(digest)
    with _build_lock():
        if _label(local, SOURCE_LABEL) == digest:
            _docker("tag", local, name)  # the render's name may point at a later build: not now
            return Provided(name, local, standin=False)
        args = ["--tag", local, "--label", f"{SOURCE_LABEL}={digest}"]
        # The checkout's commit, for `--version` and build_info. Not part of the digest: a
        # commit that changes none of the image's inputs reuses the image built at an earlier
        # one (it says that commit), rather than rebuilding it.
        commit = buildinfo.checkout_commit(root)
        if commit is not None:
            args += ["--build-arg", f"{COMMIT_ARG}={commit}"]
        if real_image_available(DOCKERFILE_BASE, progress):
            base = DOCKERFILE_BASE
        else:
            base = ensure_python_base(progress)
            args += ["--build-arg", f"{BASE_ARG}={base}"]
        say(f"building the project's image {name} from the Dockerfile on {base}")
        seconds = _docker_build(name, [*args, str(root)], None, "the project's image")
        _untag_older(local)
    say(f"built {name} ({local}) in {seconds:.0f}s")
    return Provided(name, local, standin=False, build_seconds=seconds)


def ensure_images(
    names: Iterable[str] | None = None, progress: Progress | None = None
) -> list[Provided]:
    """Each of ``names`` (default: the whole stand-in table) as a real image where Docker can
    pull it, else as its stand-in, building what is missing."""
    wanted = sorted(standins.STANDINS if names is None else set(names))
    unknown = [n for n in wanted if n not in standins.STANDINS]
    if unknown:
        raise BuildError(f"no stand-in for {', '.join(unknown)} (see standins.STANDINS)")
    out: list[Provided] = []
    for name in wanted:
        if real_image_available(name, progress):
            out.append(Provided(name, name, standin=False))
            continue
        key = standins.STANDINS[name]
        local, seconds = ensure_standin(key, progress)
        out.append(Provided(name, local, standin=True, recipe=key, build_seconds=seconds))
    return out


def _tag_in_node(node: realnode.RealNode, source: str, targets: list[str]) -> None:
    proc = _docker(
        "exec", node.container, f"{rc.NODE_BIN}/ctr", "-n", "k8s.io", "images", "tag", "--force",
        standins.normalize(source), *(standins.normalize(t) for t in targets),
    )  # fmt: skip
    if proc.returncode != 0:
        raise realnode.RealNodeError(
            f"tagging {source} as {', '.join(targets)} in {node.name} failed: "
            f"{(proc.stderr or proc.stdout).strip()}"
        )


def _node_images(node: realnode.RealNode) -> set[str]:
    """The images the node's containerd holds (a node keeps them across `cluster up`s: its
    containerd's folder is on the host)."""
    proc = _docker(
        "exec", node.container, f"{rc.NODE_BIN}/ctr", "-n", "k8s.io", "images", "ls", "-q"
    )
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def images_record(state_dir: Path) -> Path:
    """Where a plane records what it loaded into its real nodes."""
    return rc.realnodes_dir(state_dir) / "images.json"


def load(
    state_dir: Path,
    provided: list[Provided],
    nodes: list[realnode.RealNode] | None = None,
    progress: Progress | None = None,
) -> list[Provided]:
    """Load the provided images into the plane's real nodes (all by default) under their names,
    record them, and return them with the load's time (the slowest node's)."""
    say = _say(progress)
    targets = nodes if nodes is not None else realnode.list_nodes(state_dir)
    if not targets:
        raise realnode.RealNodeError(f"the plane in {state_dir} has no running real node")
    locals_ = sorted({p.local for p in provided})
    # Every name under the image that stands for it (a real image is its own name).
    aliases: dict[str, list[str]] = {}
    for p in provided:
        if p.name != p.local:
            aliases.setdefault(p.local, []).append(p.name)

    def into(node: realnode.RealNode) -> float:
        started = time.monotonic()
        held = _node_images(node)
        missing = [i for i in locals_ if standins.normalize(i) not in held]
        if missing:
            realnode.stream_images(node, missing)
        for local, names in sorted(aliases.items()):
            _tag_in_node(node, local, names)
        took = round(time.monotonic() - started, 1)
        if missing:
            say(f"loaded {len(missing)} image(s) into {node.name} in {took:.1f}s")
        return took

    # Under the build lock: a build in another process (another checkout's `cluster up`, a
    # test run) untags the builds it replaces, which must not happen mid-save. The nodes load
    # at once: each is its own `docker save` into its own containerd.
    with _build_lock(), concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
        seconds = max(pool.map(into, targets))
    done = [Provided(**{**asdict(p), "load_seconds": seconds}) for p in provided]
    record = images_record(state_dir)
    old = {p.name: p for p in loaded(state_dir)}
    old.update({p.name: p for p in done})
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps([asdict(p) for p in sorted(old.values(), key=lambda p: p.name)], indent=1)
    )
    return done


def loaded(state_dir: Path) -> list[Provided]:
    """What :func:`load` recorded for this plane (empty if nothing was loaded)."""
    try:
        data = json.loads(images_record(state_dir).read_text())
    except (OSError, ValueError):
        return []
    return [Provided(**item) for item in data if isinstance(item, dict)]


def provide(
    state_dir: Path,
    nodes: list[realnode.RealNode] | None = None,
    progress: Progress | None = None,
) -> list[Provided]:
    """The project's image and every name in the stand-in table, built or pulled, loaded into
    the plane's real nodes (all by default)."""
    provided = [ensure_project_image(progress), *ensure_images(None, progress)]
    return load(state_dir, provided, nodes, progress)
