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
    assert found.pip == ("scikit-learn==1.5.2", 'pandas[performance] >=2; python_version >= "3.9"')
    assert found.left_out == (
        "conda-forge::numpy=1.26: a conda package (only the `pip:` list is installed locally)",
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
