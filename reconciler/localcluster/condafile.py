"""What the local plane installs from a model deployment's conda file.

A deployment's `environment.conda_file` is mounted into its pod and named by
`AZUREML_EXTRA_CONDA_YAML_ABS_PATH`; the product's inference images install it when the
container starts. The local plane's stand-ins for those images (`standins`) have no conda: their
`micromamba` copies the image's virtualenv, which holds the model server, and pip-installs the
conda file's packages into it. `read` turns the file into what to install and what is left
out, and why:

- conda packages (`numpy=2.3.1`, `conda-forge::scikit-learn>=1.5`) are installed from PyPI
  under the PyPI name (`CONDA_TO_PYPI` where it differs, e.g. `pytorch` -> `torch`), their
  version translated (conda's `=2.3.1` is a prefix match: pip's `==2.3.1.*`; a build string is
  dropped). Packages that are no Python package (`NOT_ON_PYPI`: compilers, CUDA, MKL, ...)
  are left out and named, so that a scoring script that needs one fails with the reason in the
  pod's log;
- `python=3.X`: the local plane runs its own Python; a different pin is named;
- the packages the image itself provides (`IMAGE_PROVIDES`: the model server, whose version is
  the local plane's pin, and the meta-package that pulled it in on older images);
- pip options (`--extra-index-url`, `-r file`): not followed.

Pure: text in, `Environment` out. Copied into the stand-in images,
whose `micromamba` (`standin_files/micromamba`) reads conda files with it: it may import only
the standard library, PyYAML and packaging.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

IMAGE_PROVIDES = frozenset({"azureml-inference-server-http", "azureml-defaults"})
# conda-forge / defaults names whose PyPI package is named otherwise.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "matplotlib-base": "matplotlib",
    "pyyaml": "PyYAML",
    "tensorflow-base": "tensorflow",
    "pytables": "tables",
    "msgpack-python": "msgpack",
    "lightgbm": "lightgbm",
}
# conda packages that are libraries or tools, not Python packages on PyPI: left out, named.
NOT_ON_PYPI = frozenset(
    {
        "blas", "ca-certificates", "cudatoolkit", "cudnn", "cuda", "cuda-toolkit", "gcc",
        "gxx", "libgcc", "libgcc-ng", "libstdcxx-ng", "libgomp", "mkl", "mkl-service",
        "nccl", "openmpi", "openssl", "r-base", "setuptools", "wheel", "zlib", "git", "make",
        "cmake", "nodejs", "openjdk", "pytorch-cuda", "cpuonly", "python_abi", "tzdata",
    }
)  # fmt: skip
_CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?P<rest>[^\[]*)$")


class CondaFileError(ValueError):
    """The conda file is not a YAML mapping with a `dependencies` list."""


@dataclass(frozen=True)
class Environment:
    """The pip requirements to install, and the conda file's entries left out, each with why."""

    pip: tuple[str, ...]
    left_out: tuple[str, ...]

    @property
    def key(self) -> str:
        """Names the installed environment: the same requirements share one."""
        # The first line changes when what is installed for the same list changes (3: the
        # model server is installed with the list, resolved as one set).
        text = "\n".join(["layout 3", *sorted(self.pip)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def read(text: str) -> Environment:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CondaFileError(f"not YAML: {err}") from err
    if not isinstance(data, dict):
        raise CondaFileError("not a mapping")
    dependencies = data.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise CondaFileError("`dependencies` is not a list")
    pip: list[str] = []
    left_out: list[str] = []
    for entry in dependencies:
        if isinstance(entry, dict) and isinstance(entry.get("pip"), list):
            for line in entry["pip"]:
                _pip_entry(str(line).strip(), pip, left_out)
        elif isinstance(entry, str):
            _conda_entry(entry.strip(), pip, left_out)
        else:
            left_out.append(f"{entry!r}: not a package")
    return Environment(tuple(pip), tuple(left_out))


def _pip_entry(line: str, pip: list[str], left_out: list[str]) -> None:
    if not line or line.startswith("-"):
        left_out.append(f"{line}: pip options are not followed on the local plane")
        return
    _take(line, line, pip, left_out)


def _take(entry: str, requirement: str, pip: list[str], left_out: list[str]) -> None:
    """Install `requirement` (pip's syntax) for the file's `entry`, unless it is none or the
    model server provides it: then `entry` is named as left out."""
    try:
        name = canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement:
        left_out.append(f"{entry}: not a pip requirement")
        return
    if name in IMAGE_PROVIDES:
        left_out.append(f"{entry}: provided by the local plane's model server")
        return
    pip.append(requirement)


def _conda_entry(spec: str, pip: list[str], left_out: list[str]) -> None:
    name = re.split(r"[=<>!~\s\[]", spec.split("::")[-1], maxsplit=1)[0].lower()
    if name == "python":
        pinned = re.fullmatch(r"python\s*==?\s*([\d.]+?)\.?\*?", spec)
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        if pinned and not _same_version(pinned[1], running):
            left_out.append(f"{spec}: the local plane runs Python {running}")
        return
    if name == "pip":  # the installer itself
        return
    if name in NOT_ON_PYPI or name.startswith(("lib", "r-", "cuda-")):
        left_out.append(f"{spec}: a conda package that is no Python package on PyPI")
        return
    requirement = pip_requirement(spec)
    if requirement is None:
        left_out.append(f"{spec}: not a conda package spec this plane can translate")
        return
    _take(spec, requirement, pip, left_out)


def pip_requirement(spec: str) -> str | None:
    """A conda package spec (`conda-forge::numpy=2.3.1=py312_0`, `scipy>=1.11,<2`) as the pip
    requirement of the same package on PyPI (`numpy==2.3.1.*`), None when it cannot be read."""
    match = _CONDA_SPEC.match(spec.split("::")[-1].strip())
    if match is None:
        return None
    name = CONDA_TO_PYPI.get(match["name"].lower(), match["name"])
    rest = match["rest"].strip()
    exact = re.fullmatch(r"=?([0-9][^=<>!~\s,|]*)(?:[=\s]\S+)?", rest)
    if exact:
        # conda's `=1.2`, `1.2`, `=1.2=build` and `1.2.*` match the versions that start so
        version = f"=={exact[1].rstrip('*').rstrip('.')}.*"
    else:
        version = rest.split()[0] if rest else ""  # a constraint pip reads (`>=1.2,<2`)
    requirement = f"{name}{version}"
    try:
        Requirement(requirement)
    except InvalidRequirement:
        return None
    return requirement


def _same_version(pinned: str, running: str) -> bool:
    """Whether a pin like 3, 3.11 or 3.11.4 admits the running major.minor."""
    return f"{pinned}.".startswith(f"{running}.") or f"{running}.".startswith(f"{pinned}.")
