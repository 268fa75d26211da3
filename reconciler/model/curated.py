"""Curated environments: the product's named environments and the images it publishes for them.

ML CLI v2 jobs and deployments name an environment the product curates instead of an image,
in three spellings: `azureml:AzureML-NAME@latest`, `azureml:AzureML-NAME:VERSION` and
`azureml://registries/azureml/environments/NAME/labels/latest` (or `.../versions/VERSION`).
Each curated environment is published as the container image
`mcr.microsoft.com/azureml/curated/NAME:TAG`: the tag is `latest` for `@latest` / `labels/latest`
and the environment's version otherwise (the product's "curated environments" documentation and
the `azureml` registry list them; the names below are the ones its public examples use and
their near relatives). A name not in the table is an error that names the nearest known one:
guessing an image for it would deploy something that may not exist.

Pure: a reference in, an image or an error message out. Used by `workloads`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reconciler.model import problems

REGISTRY = "mcr.microsoft.com/azureml/curated"

# Curated environments known to be published under REGISTRY (the lowercase registry name).
KNOWN = frozenset(
    {
        "acpt-pytorch-2.2-cuda12.1",
        "acpt-pytorch-2.8-cuda12.6",
        "lightgbm-3.3",
        "minimal-ubuntu20.04-py38-cpu-inference",
        "minimal-ubuntu22.04-py39-cpu-inference",
        "mlflow-py312-inference",
        "mlflow-ubuntu20.04-py38-cpu-inference",
        "mlflow-ubuntu22.04-py39-cpu-inference",
        "model-evaluation",
        "responsibleai-tabular",
        "sklearn-1.0-ubuntu20.04-py38-cpu",
        "sklearn-1.1-ubuntu20.04-py38-cpu",
        "sklearn-1.5",
        "tensorflow-2.12-cuda11",
        "tensorflow-2.16-cuda12",
    }
)

# `azureml:AzureML-NAME@latest` / `azureml:AzureML-NAME:VERSION`
_SHORT = re.compile(
    r"^azureml:AzureML-(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*?)"
    r"(?:@(?P<label>[A-Za-z0-9._-]+)|:(?P<version>[A-Za-z0-9._-]+))$"
)
# `azureml://registries/azureml/environments/NAME/labels/LABEL` or `.../versions/VERSION`
_REGISTRY = re.compile(
    r"^azureml://registries/azureml/environments/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
    r"/(?:labels/(?P<label>[A-Za-z0-9._-]+)|versions/(?P<version>[A-Za-z0-9._-]+))/?$"
)


@dataclass(frozen=True)
class Resolved:
    """A curated reference's image, or why there is none (`error`)."""

    image: str | None
    error: str | None = None


def is_curated(reference: str) -> bool:
    """Whether `reference` is spelt as a curated environment of the product."""
    return bool(_SHORT.match(reference) or _REGISTRY.match(reference))


def resolve(reference: str) -> Resolved:
    """The image of a curated environment reference (see the module docstring)."""
    match = _SHORT.match(reference) or _REGISTRY.match(reference)
    if match is None:
        return Resolved(None, f"{reference} is not a curated environment reference")
    name = match["name"].lower()
    if name not in KNOWN:
        return Resolved(
            None,
            f"no curated environment named {match['name']!r} is known to this reconciler"
            f"{problems.did_you_mean(name, sorted(KNOWN))}: give environment.image (the image "
            f"{REGISTRY}/<name>:<tag> for a curated one)",
        )
    label = match["label"]
    if label is not None and label != "latest":
        return Resolved(None, f"label {label!r}: only the label 'latest' names an image tag")
    return Resolved(f"{REGISTRY}/{name}:{match['version'] or 'latest'}")
