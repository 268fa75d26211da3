"""The original product's documented examples validate as written.

The product's rules: `docs/domain.md#instance-types` to `docs/domain.md#online-deployments`.

Each example is pasted as the docs give it, only its `<placeholders>` filled in; fields the
reconciler has no use for (`app_insights_enabled`, `environment.path`) are accepted with a
`note:`, never rejected. A model referenced by name and version (a registered model) resolves
through the extension's `registeredModelUri`, and without it is an error naming that setting.
"""

from pathlib import Path

from reconciler.model import repo
from tests.helpers import extension, lines, load, write_repo

EXTENSION = extension(
    "enableTraining: true\nenableInference: true\ninferenceRouterServiceType: LoadBalancer\n"
    "allowInsecureConnections: true\n{more}"
)
INSTANCE_TYPES = """
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata:
  name: myinstancetypename
spec:
  nodeSelector:
    mylabel: mylabelvalue
  resources:
    limits:
      cpu: "1"
      nvidia.com/gpu: 1
      memory: "2Gi"
    requests:
      cpu: "700m"
      memory: "1500Mi"
---
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceTypeList
items:
  - metadata:
      name: cpusmall
    spec:
      resources:
        requests:
          cpu: "100m"
          memory: "100Mi"
        limits:
          cpu: "1"
          nvidia.com/gpu: 0
          memory: "1Gi"
  - metadata:
      name: defaultinstancetype
    spec:
      resources:
        requests:
          cpu: "1"
          memory: "1Gi"
        limits:
          cpu: "1"
          nvidia.com/gpu: 0
          memory: "1Gi"
"""
JOB = """
command: python -c "print('Hello world!')"
environment:
  docker:
    image: python
compute: azureml:azureml-extension
resources:
  instance_type: cpusmall
"""
DEPLOYMENT = """
name: blue
app_insights_enabled: true
model:
  name: sklearn_mnist_model
  version: 1
  local_path: ./model/sklearn_mnist_model.pkl
code_configuration:
  code:
    local_path: ./script/
  scoring_script: score.py
instance_type: cpusmall
environment:
  name: sklearn-mnist-env
  version: 1
  path: .
  conda_file: file:./model/conda.yml
  docker:
    image: mcr.microsoft.com/azureml/openmpi3.1.2-ubuntu18.04:20210727.v1
scale_setting:
  type: target_utilization
  min_instances: 3
  max_instances: 15
  target_utilization_percentage: 70
  polling_interval: 10
"""
FILES = {
    "deployments/model/sklearn_mnist_model.pkl": b"\x80\x04model",
    "deployments/model/conda.yml": "name: env\ndependencies: [python=3.11]\n",
    "deployments/script/score.py": "def init():\n    pass\n",
}


def _repo(tmp_path: Path, deployment: str, more: str = "") -> repo.Loaded:
    files: dict[str, str | bytes] = {
        "extension.yaml": EXTENSION.format(more=more),
        "instancetypes.yaml": INSTANCE_TYPES,
        "jobs/hello.yml": JOB,
        "deployments/blue.yml": "$schema: https://azuremlschemas.azureedge.net/latest/"
        "managedOnlineDeployment.schema.json\n" + deployment.lstrip("\n"),
        **FILES,
    }
    return load(write_repo(tmp_path, files))


def test_the_documented_examples_validate_with_notes(tmp_path: Path) -> None:
    loaded = _repo(tmp_path, DEPLOYMENT)
    assert loaded.valid, lines(loaded)
    notes = [p for p in lines(loaded) if " note: " in p]
    assert [n.split(": note: ")[0].rsplit(": ", 1)[1] for n in notes] == [
        "app_insights_enabled",
        "environment.path",
    ]
    assert all("accepted, not used" in n for n in notes)
    assert loaded.repo.summary() == (
        "1 extension, 3 instance types, 1 job, 1 deployment, 0 endpoints"
    )


REGISTERED = DEPLOYMENT.replace("  local_path: ./model/sklearn_mnist_model.pkl\n", "")


def test_a_registered_model_needs_the_setting_named_in_the_error(tmp_path: Path) -> None:
    loaded = _repo(tmp_path, REGISTERED)
    assert [str(p).split(": ", 1)[1] for p in loaded.errors] == [
        "model: registered model sklearn_mnist_model:1 needs the setting registeredModelUri on "
        "extension 'azureml-extension' (a URI prefix: the model is fetched from "
        "PREFIX/NAME/VERSION)"
    ]


def test_a_registered_model_resolves_through_the_setting(tmp_path: Path) -> None:
    more = "registeredModelUri: https://store.blob.core.windows.net/models/\n"
    for deployment in (
        REGISTERED,
        REGISTERED.replace(
            "model:\n  name: sklearn_mnist_model\n  version: 1\n",
            "model: azureml:sklearn_mnist_model:1\n",
        ),
    ):
        loaded = _repo(tmp_path / str(len(deployment)), deployment, more)
        assert loaded.valid, lines(loaded)
        assert loaded.repo.deployments["blue"].models == (
            "https://store.blob.core.windows.net/models/sklearn_mnist_model/1",
        )


OLDER_ENDPOINT = """
name: sklearn-mnist
compute: azureml:azureml-extension
auth_mode: key
traffic:
  blue: 100
deployments:
  - name: blue
    app_insights_enabled: true
    model:
      name: sklearn_mnist_model
      version: 1
      local_path: ./model/sklearn_mnist_model.pkl
    code_configuration:
      code:
        local_path: ./script/
      scoring_script: score.py
    instance_type: cpusmall
    environment:
      name: sklearn-mnist-env
      version: 1
      path: .
      conda_file: file:./model/conda.yml
      docker:
        image: mcr.microsoft.com/azureml/openmpi3.1.2-ubuntu18.04:20210727.v1
    scale_settings:
      type: auto
      min_instances: 1
      max_instances: 3
      target_utilization_percentage: 70
"""


def test_the_older_endpoint_shape_validates_too(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "extension.yaml": EXTENSION.format(more=""),
        "instancetypes.yaml": INSTANCE_TYPES,
        "deployments/endpoint.yml": OLDER_ENDPOINT,
        **FILES,
    }
    loaded = load(write_repo(tmp_path, files))
    assert loaded.valid, lines(loaded)
    kinds = sorted(p.split(": ")[2] for p in lines(loaded))
    assert kinds == ["note", "note", "warning"]  # two unused fields; `auto` is the older name
    assert loaded.repo.deployments["blue"].scale.type == "target_utilization"
