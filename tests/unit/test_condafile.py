"""What the local plane installs from a model deployment's conda file (`localcluster.condafile`)."""

from __future__ import annotations

import sys

import pytest

from reconciler.localcluster import condafile
from tests.helpers import EXAMPLE

RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_example_needs_nothing_installed() -> None:
    text = (EXAMPLE / "deployments" / "model" / "conda.yml").read_text()
    assert condafile.read(text) == condafile.Environment(pip=(), left_out=())


def test_a_cli_v2_conda_file_installs_its_pip_list_and_names_the_rest() -> None:
    found = condafile.read(
        f"""\
name: sklearn-env
channels: [conda-forge]
dependencies:
  - python={RUNNING}
  - pip=23.2
  - conda-forge::numpy=1.26
  - pip:
    - scikit-learn==1.5.2
    - azureml-inference-server-http==1.2.0
    - azureml-defaults>=1.50
    - --extra-index-url https://example.org/simple
    - pandas[performance] >=2; python_version >= "3.9"
"""
    )
    assert found.pip == (
        "numpy==1.26.*",
        "scikit-learn==1.5.2",
        'pandas[performance] >=2; python_version >= "3.9"',
    )
    assert found.left_out == (
        "azureml-inference-server-http==1.2.0: provided by the local plane's model server",
        "azureml-defaults>=1.50: provided by the local plane's model server",
        "--extra-index-url https://example.org/simple: pip options are not followed on the "
        "local plane",
    )


@pytest.mark.parametrize(
    ("pin", "named"),
    [("python=3", False), (f"python={RUNNING}.4", False), (f"python=={RUNNING}.*", False),
     ("python=2.7", True), ("python>=3.8", False)],
)  # fmt: skip
def test_a_python_pin_is_named_only_when_it_excludes_the_running_python(
    pin: str, named: bool
) -> None:
    found = condafile.read(f"dependencies: [{pin}]")
    assert found.left_out == ((f"{pin}: the local plane runs Python {RUNNING}",) if named else ())


def test_the_same_requirements_share_one_environment() -> None:
    one = condafile.read("dependencies: [{pip: [tabulate==0.9.0, six]}]")
    other = condafile.read("name: x\ndependencies: [python, {pip: [six, tabulate==0.9.0]}]")
    assert one.key == other.key
    assert one.key != condafile.read("dependencies: [{pip: [tabulate==0.8.10]}]").key


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1, 2]", "not a mapping"), ("dependencies: numpy", "not a list"), ("a: [", "not YAML")],
)
def test_a_conda_file_that_is_not_one_is_an_error(text: str, message: str) -> None:
    with pytest.raises(condafile.CondaFileError, match=message):
        condafile.read(text)


@pytest.mark.parametrize(
    ("spec", "requirement"),
    [
        ("numpy=2.3.1", "numpy==2.3.1.*"),  # conda's `=` is a prefix match
        ("conda-forge::scikit-learn=1.7.0", "scikit-learn==1.7.0.*"),
        ("pytorch=2.1=py3.11_cuda12", "torch==2.1.*"),  # renamed on PyPI; build dropped
        ("numpy 1.26 py_0", "numpy==1.26.*"),
        ("numpy=1.26.*", "numpy==1.26.*"),
        ("scipy>=1.11,<2", "scipy>=1.11,<2"),
        ("numpy==1.26.4", "numpy==1.26.4"),
        ("pandas", "pandas"),
        ("py-xgboost", "xgboost"),
    ],
)
def test_a_conda_package_is_installed_from_pypi_under_its_pypi_name(
    spec: str, requirement: str
) -> None:
    assert condafile.pip_requirement(spec) == requirement
    assert condafile.read(f"dependencies: [{spec!r}]").pip == (requirement,)


def test_the_public_blue_green_conda_file_installs_its_conda_and_pip_packages() -> None:
    # The shape of the kubernetes blue/green example's conda file: conda packages pinned with
    # `=`, a pip list that repeats the model server.
    found = condafile.read(
        """\
name: model-env
channels:
  - conda-forge
dependencies:
  - python=2.7
  - numpy=2.3.1
  - pip=25.1.1
  - scikit-learn=1.7.0
  - cudatoolkit=11.8
  - pip:
    - azureml-inference-server-http==1.4.1
    - inference-schema[numpy-support]
    - joblib
"""
    )
    assert found.pip == (
        "numpy==2.3.1.*",
        "scikit-learn==1.7.0.*",
        "inference-schema[numpy-support]",
        "joblib",
    )
    assert found.left_out == (
        f"python=2.7: the local plane runs Python {RUNNING}",
        "cudatoolkit=11.8: a conda package that is no Python package on PyPI",
        "azureml-inference-server-http==1.4.1: provided by the local plane's model server",
    )
