"""Property tests: no input, however odd, crashes the loader or the validator."""

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.model import documents, settings
from tests.helpers import API, load, write_repo

KEYS = st.sampled_from(
    [
        "apiVersion",
        "kind",
        "metadata",
        "name",
        "spec",
        "config",
        "configProtected",
        "clusterType",
        "items",
        "resources",
        "requests",
        "limits",
        "nvidia.com/gpu",
        "cpu",
        "memory",
        "command",
        "environment",
        "image",
        "docker",
        "conda_file",
        "code",
        "local_path",
        "model",
        "path",
        "scale_settings",
        "type",
        "min_instances",
        "max_instances",
        "instance_type",
        "compute",
        "deployments",
        "$schema",
        "enableTraining",
        "enableInference",
        "nodeSelector",
        "sslCertPemFile",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 2000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            "Extension",
            "Job",
            "Deployment",
            "InstanceType",
            "InstanceTypeList",
            API,
            "amlarc.azureml.com/v1alpha1",
            "managedClusters",
            "connectedClusters",
            "target_utilization",
            "default",
            "100m",
            "2Gi",
            "True",
            "../x",
            "/etc/passwd",
            "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json",
            "https://x/kubernetesOnlineDeployment.schema.json",
            "file:./c.yml",
            "azureml:x",
        ]
    )
    | st.text(max_size=12)
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=30,
)


@given(st.text(max_size=300))
def test_arbitrary_text_gives_documents_or_problems(text: str) -> None:
    parsed = documents.parse("x.yaml", text)
    assert all(p.file == "x.yaml" for p in parsed.problems)


@given(st.lists(DOCUMENTS, min_size=1, max_size=4))
def test_arbitrary_documents_never_crash_the_validator(
    tmp_path_factory: object, docs: list[object]
) -> None:
    root = Path(tmp_path_factory.mktemp("repo"))  # type: ignore[attr-defined]
    text = yaml.safe_dump_all(docs)
    loaded = load(write_repo(root, {"m.yaml": text, "c.yml": "x: 1\n"}))
    for problem in loaded.problems:
        assert problem.file.startswith(str(root))
        assert problem.message
    assert loaded.valid == (not loaded.errors)


@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_validator(tmp_path_factory: object, text: str) -> None:
    root = Path(tmp_path_factory.mktemp("repo"))  # type: ignore[attr-defined]
    loaded = load(write_repo(root, {"m.yaml": text}))
    assert all(p.message for p in loaded.problems)


def _near(value: object) -> st.SearchStrategy[object]:
    """Mostly the right value, sometimes anything: reaches the rules past the schemas."""
    return st.just(value) | SCALARS


SETTING_KEYS = st.sampled_from(
    [s.name for s in settings.SETTINGS]
    + [a.name for a in settings.ALIASES]
    + ["nodeSelector.pool", "ENABLETRAINING", "volcanoScheduler"]
)
EXTENSIONS = st.fixed_dictionaries(
    {
        "apiVersion": _near(API),
        "kind": st.just("Extension"),
        "metadata": st.fixed_dictionaries({"name": _near("ext")}),
        "spec": st.fixed_dictionaries(
            {
                "clusterType": _near("managedClusters") | st.just("connectedClusters"),
                "config": st.dictionaries(SETTING_KEYS, SCALARS | DOCUMENTS, max_size=8),
            },
            optional={
                "configProtected": st.dictionaries(
                    st.sampled_from(["sslCertPemFile", "sslKeyPemFile", "sslCertKeyFile"]),
                    _near("c.yml"),
                )
            },
        ),
    }
)
SCALE = st.fixed_dictionaries(
    {"type": st.sampled_from(["target_utilization", "default", "manual", "auto"]) | SCALARS},
    optional={
        k: st.integers(-1, 200) | SCALARS
        for k in (
            "min_instances",
            "max_instances",
            "target_utilization_percentage",
            "polling_interval",
            "instance_count",
        )
    },
)
DEPLOYMENTS = st.fixed_dictionaries(
    {
        "$schema": st.just("https://x/kubernetesOnlineDeployment.schema.json"),
        "name": _near("blue"),
        "environment": _near({"image": "python"}) | st.just({"conda_file": "file:c.yml"}),
    },
    optional={
        "scale_settings": SCALE,
        "scale_setting": SCALE,
        "instance_count": st.integers(-1, 5),
        "instance_type": _near("small"),
        "model": _near({"path": "c.yml"}) | st.just("https://m/x.pkl"),
        "code_configuration": _near({"code": ".", "scoring_script": "c.yml"}),
        "compute": SCALARS,
        "endpoint_name": _near("mnist"),
    },
)
SHARES = st.dictionaries(st.sampled_from(["blue", "green", "red"]), st.integers(-1, 101) | SCALARS)
ENDPOINTS = st.fixed_dictionaries(
    {
        "$schema": st.just("https://x/kubernetesOnlineEndpoint.schema.json"),
        "name": _near("mnist"),
        "auth_mode": _near("key") | st.just("AML_Token"),
    },
    optional={
        "traffic": _near({"blue": 90, "green": 10}) | SHARES,
        "mirror_traffic": SHARES,
        "compute": SCALARS,
        "type": _near("kubernetes"),
        "tags": st.dictionaries(st.text(max_size=4), SCALARS, max_size=2),
    },
)
INSTANCE_TYPES = st.fixed_dictionaries(
    {
        "apiVersion": _near("amlarc.azureml.com/v1alpha1"),
        "kind": st.just("InstanceType"),
        "metadata": st.fixed_dictionaries({"name": _near("small")}),
        "spec": st.fixed_dictionaries(
            {
                "resources": st.fixed_dictionaries(
                    {},
                    optional={
                        part: st.dictionaries(
                            st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]),
                            st.sampled_from(["1", "100m", "2Gi", "1500Mi", 1, 2, 0.5]) | SCALARS,
                        )
                        for part in ("requests", "limits")
                    },
                )
            },
            optional={"nodeSelector": st.dictionaries(st.text(max_size=4), SCALARS, max_size=2)},
        ),
    }
)


@given(st.lists(EXTENSIONS | DEPLOYMENTS | ENDPOINTS | INSTANCE_TYPES, min_size=1, max_size=6))
def test_near_valid_manifests_never_crash(tmp_path_factory: object, docs: list[object]) -> None:
    root = Path(tmp_path_factory.mktemp("repo"))  # type: ignore[attr-defined]
    loaded = load(write_repo(root, {"m.yaml": yaml.safe_dump_all(docs), "c.yml": "x: 1\n"}))
    assert all(p.message and p.file.startswith(str(root)) for p in loaded.problems)
