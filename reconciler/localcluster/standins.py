"""Stand-ins for the images the manifests name that no registry here can give: one table.

A model deployment or job names its image (``environment.image``: ``python:3.11-slim``,
``mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest``) or a curated environment, which
``model.curated`` turns into ``mcr.microsoft.com/azureml/curated/NAME:TAG``. Where those cannot
be pulled (no registry is reachable on these machines), the local plane's real nodes get a
stand-in under the same name: Debian's Python (``nodepins.PYTHON_BASE_PACKAGES``) with the pinned
model server (``azureml-inference-server-http``, the version the render pins) in a virtualenv on
PATH, plus, for a curated environment, the libraries it is named after. ``STANDINS`` says which
recipe stands in for which name; ``RECIPES`` says what each recipe is. Several names share one
recipe, so one image is built and loaded once and tagged under each name.

What a stand-in is not: the product's images carry conda, with which the render's
``prepare-environment`` init container makes a deployment's ``conda_file`` environment; conda is
in no package registry these machines reach, so the model-server stand-ins carry a ``micromamba``
of their own (``standin_files/micromamba``) that knows ``create -p PREFIX -f FILE`` only: a copy
of the image's virtualenv plus the file's packages from PyPI under their PyPI names
(``condafile``), the model server kept at its pin; no conda-only package, no other Python than
the image's. The ``python:*`` stand-ins are Debian's Python 3.11 whatever the tag says.

Pure: names, Dockerfile text, build files and digests. ``localimages`` builds, pulls and loads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from reconciler.localcluster import nodepins
from reconciler.model import curated, workloads
from reconciler.render import workloadobjects

# Labels on every stand-in image: `cluster status` and the pull check tell them from real ones.
STANDIN_LABEL = "io.mlext.standin"
DIGEST_LABEL = "io.mlext.recipe-digest"
# The virtualenv every recipe with Python packages installs into; it is first on PATH, as the
# product images' conda environment is.
VENV = "/opt/venv"
# The conda stand-in (``standin_files/micromamba``) and the reader of conda files it runs, copied
# into the images whose recipe has ``conda_shim``.
SHIM_DIR = "/opt/mlext"
SHIM_FILES = {
    "micromamba": Path(__file__).with_name("standin_files") / "micromamba",
    "condafile.py": Path(__file__).with_name("condafile.py"),
}


@dataclass(frozen=True)
class Recipe:
    """How one stand-in image is made: on ``parent`` (another recipe's key, or None for the
    Python base), Debian packages ``debian`` and Python packages ``pip`` from PyPI."""

    key: str
    parent: str | None
    debian: tuple[str, ...]
    pip: tuple[str, ...]
    what: str
    conda_shim: bool = False


RECIPES: dict[str, Recipe] = {
    r.key: r
    for r in (
        Recipe(
            "modelserver",
            None,
            (),
            (workloadobjects.MODEL_SERVER_REQUIREMENT,),
            "Debian's Python 3.11 and the model server",
            conda_shim=True,
        ),
        Recipe(
            "sklearn",
            "modelserver",
            (),
            nodepins.SKLEARN_PACKAGES,
            "the model server with scikit-learn and pandas",
        ),
        Recipe(
            "lightgbm",
            "modelserver",
            nodepins.LIGHTGBM_DEBIAN_PACKAGES,
            nodepins.LIGHTGBM_PACKAGES,
            "the model server with LightGBM, scikit-learn and pandas",
        ),
        Recipe(
            "mlflow",
            None,
            (),
            (workloadobjects.MODEL_SERVER_REQUIREMENT, *nodepins.MLFLOW_PACKAGES),
            "the model server with MLflow, scikit-learn and pandas",
            conda_shim=True,
        ),
        Recipe("curl", None, ("curl",), (), "Debian's curl (the init containers' fetch)"),
    )
}

# Image name, as the manifests (or the render) write it -> the key of the recipe standing in.
STANDINS: dict[str, str] = {
    # The repo's own manifests and the public examples' `environment.image`.
    "python:3.11-slim": "modelserver",
    "library/python:latest": "modelserver",
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest": "modelserver",
    # Curated environments of the public examples (as `model.curated` names their images).
    f"{curated.REGISTRY}/sklearn-1.5:latest": "sklearn",
    f"{curated.REGISTRY}/lightgbm-3.3:latest": "lightgbm",
    f"{curated.REGISTRY}/minimal-ubuntu22.04-py39-cpu-inference:latest": "modelserver",
    # The image of an MLflow deployment without code (`model.workloads.MLFLOW_IMAGE`).
    workloads.MLFLOW_IMAGE: "mlflow",
    # The init container that fetches remote models and job inputs.
    workloadobjects.FETCH_IMAGE: "curl",
}


def context_files(recipe: Recipe) -> dict[str, bytes]:
    """The files the build of ``recipe`` copies in (its build context besides the Dockerfile):
    the conda stand-in and the conda-file reader it runs."""
    if not recipe.conda_shim:
        return {}
    return {name: path.read_bytes() for name, path in SHIM_FILES.items()}


def dockerfile(recipe: Recipe, parent_image: str) -> str:
    """The Dockerfile that makes ``recipe`` on ``parent_image`` (its context: ``context_files``)."""
    lines = [f"FROM {parent_image}"]
    debian = recipe.debian + (nodepins.CONDA_SHIM_DEBIAN_PACKAGES if recipe.conda_shim else ())
    if debian:
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            f"{' '.join(debian)} && rm -rf /var/lib/apt/lists/*"
        )
    if recipe.pip:
        # No pip cache in the image; the venv is made once, by the first recipe that needs it.
        lines.append(
            f"RUN test -d {VENV} || python3 -m venv {VENV}; "
            f"PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 {VENV}/bin/pip install "
            f"{' '.join(recipe.pip)}"
        )
        lines.append(
            f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
    if recipe.conda_shim:
        lines += [
            f"COPY {' '.join(sorted(SHIM_FILES))} {SHIM_DIR}/",
            f"RUN chmod 755 {SHIM_DIR}/micromamba && ln -s {SHIM_DIR}/micromamba /usr/local/bin/",
            f"ENV MLEXT_MODEL_SERVER={workloadobjects.MODEL_SERVER_REQUIREMENT}",
        ]
    lines.append(f"LABEL {STANDIN_LABEL}={recipe.key}")
    return "\n".join(lines) + "\n"


def python_base_name(digest: str) -> str:
    """The Python base image's local name, ``digest`` being that of its mmdebstrap inputs."""
    return f"{nodepins.IMAGE_REGISTRY}/python-base:{digest[:12]}"


def recipe_digest(key: str, base_image: str) -> str:
    """A digest of everything that makes recipe ``key``: its Dockerfile and its parents' (the
    base image's name carries the base's own digest)."""
    recipe = RECIPES[key]
    parent = base_image if recipe.parent is None else local_name(recipe.parent, base_image)
    h = hashlib.sha256(dockerfile(recipe, parent).encode())
    for name, data in sorted(context_files(recipe).items()):
        h.update(f"\0{name}\0".encode() + hashlib.sha256(data).digest())
    return h.hexdigest()


def local_name(key: str, base_image: str) -> str:
    """``mlext.local/standin-KEY:<digest>``: the stand-in's own name in Docker."""
    return f"{nodepins.IMAGE_REGISTRY}/standin-{key}:{recipe_digest(key, base_image)[:12]}"


def build_order(keys: set[str]) -> list[str]:
    """``keys`` and every recipe they build on, parents first."""
    order: list[str] = []

    def visit(key: str) -> None:
        parent = RECIPES[key].parent
        if parent is not None:
            visit(parent)
        if key not in order:
            order.append(key)

    for key in sorted(keys):
        visit(key)
    return order


def normalize(reference: str) -> str:
    """The full reference containerd and the kubelet use for ``reference``: Docker Hub's domain
    and its ``library/`` added as Docker adds them (``python:3.11-slim`` ->
    ``docker.io/library/python:3.11-slim``), ``:latest`` when no tag or digest is given."""
    name, _, digest = reference.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    if not digest and ":" not in path.rsplit("/", 1)[-1]:
        path = f"{path}:latest"
    return f"{domain}/{path}" + (f"@{digest}" if digest else "")
