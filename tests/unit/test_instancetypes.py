"""Instance types: quantities, GPU only in limits, requests <= limits, default.

The product's rules: `docs/domain.md#instance-types`.
"""

from pathlib import Path

import pytest

from reconciler.model import instancetypes, quantities
from tests.helpers import errors, load, write_repo

IT = """\
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata:
  name: {name}
spec:
  nodeSelector:
    pool: gpu
  resources:
    requests:
{requests}
    limits:
{limits}
"""


def instance_type(tmp_path: Path, requests: str, limits: str, name: str = "it") -> list[str]:
    text = IT.format(name=name, requests=requests, limits=limits)
    root = write_repo(tmp_path, {"it.yaml": text})
    return [line.removeprefix(f"{root}/") for line in errors(load(root))]


@pytest.mark.parametrize("value", ["100m", '"1"', "1500Mi", "2Gi", "0.5", "1e3"])
def test_valid_quantities(tmp_path: Path, value: str) -> None:
    assert instance_type(tmp_path, f"      cpu: {value}", f"      cpu: {value}") == []


@pytest.mark.parametrize("value", ["1 core", "2GB", "-1", "lots"])
def test_invalid_quantities_are_reported_at_the_field(tmp_path: Path, value: str) -> None:
    assert instance_type(tmp_path, "      cpu: 100m", f"      memory: {value}") == [
        "it.yaml:12: spec.resources.limits.memory: must be a Kubernetes quantity such as 100m, "
        '"1", 1500Mi or 2Gi'
    ]


def test_gpu_goes_only_in_limits(tmp_path: Path) -> None:
    assert instance_type(tmp_path, "      nvidia.com/gpu: 1", "      nvidia.com/gpu: 1") == [
        "it.yaml:10: spec.resources.requests.nvidia.com/gpu: nvidia.com/gpu goes only in "
        "limits (Kubernetes sets the request equal to the limit)"
    ]


def test_gpu_limit_is_a_whole_number(tmp_path: Path) -> None:
    assert instance_type(tmp_path, "      cpu: 1", '      nvidia.com/gpu: "1"') == [
        "it.yaml:12: spec.resources.limits.nvidia.com/gpu: must be a whole number, not a "
        "string ('1')"
    ]
    assert instance_type(tmp_path, "      cpu: 1", "      nvidia.com/gpu: 1.5") == [
        "it.yaml:12: spec.resources.limits.nvidia.com/gpu: must be a whole number, not a "
        "number (1.5)"
    ]


def test_requests_may_not_exceed_limits(tmp_path: Path) -> None:
    requests = "      cpu: 1500m\n      memory: 2Gi"
    assert instance_type(tmp_path, requests, "      cpu: '1'\n      memory: 2048Mi") == [
        "it.yaml:10: spec.resources.requests.cpu: request 1500m is more than the limit 1"
    ]
    assert instance_type(tmp_path, "      cpu: 1", "      cpu: 1000m") == []


def test_builtin_default_when_none_declared() -> None:
    default = instancetypes.resolve(None, {})
    assert default is instancetypes.BUILTIN_DEFAULT
    assert default.builtin
    assert default.requests == default.limits == {"cpu": "0.6", "memory": "1536Mi"}
    assert default.node_selector == {}
    assert default.gpus == 0
    assert instancetypes.resolve("defaultinstancetype", {}) is default
    assert instancetypes.resolve("gpu", {}) is None


def test_declared_default_overrides_the_builtin(tmp_path: Path) -> None:
    text = IT.format(name="defaultinstancetype", requests="      cpu: 1", limits="      cpu: 2")
    loaded = load(write_repo(tmp_path, {"it.yaml": text}))
    declared = loaded.repo.instance_types
    resolved = instancetypes.resolve(None, declared)
    assert resolved is declared["defaultinstancetype"]
    assert resolved is not None and not resolved.builtin
    assert resolved.limits == {"cpu": "2"}


def test_quantity_values() -> None:
    assert quantities.parse("100m") == quantities.parse("0.1")
    assert quantities.parse("1Gi") == 1024 * quantities.parse("1Mi")
    assert quantities.parse("1k") == 1000
    assert not quantities.is_valid("1Q")
