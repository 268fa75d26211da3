"""Extension settings (`docs/domain.md#settings`): keys, values, aliases and cross-field rules.

Every rule has a failing fixture asserting the exact `FILE:LINE: field: message` and a passing
one. Config lines start at line 8 of the file `extension()` writes.
"""

from pathlib import Path

import pytest

from reconciler.model import settings
from tests.helpers import errors, extension, lines, load, self_signed_pem, write_repo

F = "ext.yaml"


def run(tmp_path: Path, config: str, **kwargs: str) -> list[str]:
    root = write_repo(tmp_path, {F: extension(config, **kwargs)})
    return [line.removeprefix(f"{root}/") for line in lines(load(root))]


TRAINING = "enableTraining: true\n"


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    assert run(tmp_path, TRAINING + "installVolcanno: false") == [
        f"{F}:9: spec.config.installVolcanno: unknown setting (did you mean installVolcano?)"
    ]


def test_keys_match_case_insensitively(tmp_path: Path) -> None:
    assert run(tmp_path, "EnableTraining: True\nINSTALLVOLCANO: false") == []


@pytest.mark.parametrize("value", ["True", "true", "TRUE", "tRuE", "yes-no"])
def test_booleans_accept_strings_in_any_case(tmp_path: Path, value: str) -> None:
    problems = run(tmp_path, f"enableTraining: '{value}'")
    if value == "yes-no":
        assert problems == [
            f"{F}:7: spec.config: at least one of enableTraining and enableInference must be true",
            f"{F}:8: spec.config.enableTraining: must be true or false (got 'yes-no')",
        ]
    else:
        assert problems == []


def test_one_of_training_or_inference_is_required(tmp_path: Path) -> None:
    assert run(tmp_path, "enableTraining: false\nenableInference: false") == [
        f"{F}:7: spec.config: at least one of enableTraining and enableInference must be true"
    ]


def test_inference_needs_a_router_service_type(tmp_path: Path) -> None:
    config = "enableInference: true\nallowInsecureConnections: true"
    assert run(tmp_path, config) == [
        f"{F}:7: spec.config.inferenceRouterServiceType: required when enableInference is true "
        "(one of LoadBalancer, NodePort, ClusterIP)"
    ]
    assert run(tmp_path, config + "\ninferenceRouterServiceType: nodeport") == []


def test_router_service_type_is_one_of_three(tmp_path: Path) -> None:
    config = "enableInference: true\nallowInsecureConnections: true\n"
    assert run(tmp_path, config + "inferenceRouterServiceType: LoadBalancr") == [
        f"{F}:10: spec.config.inferenceRouterServiceType: must be one of LoadBalancer, NodePort, "
        "ClusterIP (got 'LoadBalancr') (did you mean LoadBalancer?)",
        f"{F}:10: spec.config.inferenceRouterServiceType: required when enableInference is true "
        "(one of LoadBalancer, NodePort, ClusterIP)",
    ]


def test_https_needs_cname_and_certificate_source(tmp_path: Path) -> None:
    config = "enableInference: true\ninferenceRouterServiceType: ClusterIP"
    assert run(tmp_path, config) == [
        f"{F}:7: spec.config: HTTPS is in use (allowInsecureConnections is false): give "
        "sslSecret, or sslCertPemFile and sslKeyPemFile under spec.configProtected (or set "
        "allowInsecureConnections: true for dev/test)",
        f"{F}:7: spec.config.sslCname: required because HTTPS is in use "
        "(allowInsecureConnections is false)",
    ]
    assert run(tmp_path, config + "\nsslSecret: tls\nsslCname: ml.example.com") == []


def test_one_pem_file_alone_is_not_enough(tmp_path: Path) -> None:
    cert, _ = self_signed_pem()
    text = extension(
        "enableInference: true\ninferenceRouterServiceType: ClusterIP\nsslCname: a.example.com",
        protected="sslCertPemFile: cert.pem",
    )
    root = write_repo(tmp_path, {F: text, "cert.pem": cert})
    assert errors(load(root)) == [
        f"{root}/{F}:12: spec.configProtected.sslCertPemFile: sslKeyPemFile is needed too: "
        "the two PEM files go together"
    ]


def test_pem_files_must_exist_and_parse(tmp_path: Path) -> None:
    text = extension(
        "enableInference: true\ninferenceRouterServiceType: ClusterIP\nsslCname: a.example.com",
        protected="sslCertPemFile: certs/cert.pem\nsslKeyPemFile: certs/key.pem",
    )
    root = write_repo(tmp_path, {F: text, "certs/cert.pem": "not a certificate"})
    assert errors(load(root)) == [
        f"{root}/{F}:12: spec.configProtected.sslCertPemFile: the file is not a "
        "PEM certificate (no BEGIN CERTIFICATE block)",
        f"{root}/{F}:13: spec.configProtected.sslKeyPemFile: no such file relative to the repo's "
        "root (protected: the value is not shown)",
    ]


def test_passphrase_protected_key_is_rejected_without_leaking_it(tmp_path: Path) -> None:
    cert, key = self_signed_pem(passphrase=b"s3cret-passphrase")
    text = extension(
        "enableInference: true\ninferenceRouterServiceType: ClusterIP\nsslCname: a.example.com",
        protected="sslCertPemFile: cert.pem\nsslKeyPemFile: key.pem",
    )
    root = write_repo(tmp_path, {F: text, "cert.pem": cert, "key.pem": key})
    found = errors(load(root))
    assert found == [
        f"{root}/{F}:13: spec.configProtected.sslKeyPemFile: the file is "
        "passphrase-protected, which is not supported: give the key without a passphrase"
    ]
    body = key.decode().splitlines()[1]
    assert body not in "\n".join(found)


def test_key_must_belong_to_the_certificate(tmp_path: Path) -> None:
    cert, _ = self_signed_pem()
    _, other_key = self_signed_pem()
    text = extension(
        "enableInference: true\ninferenceRouterServiceType: ClusterIP\nsslCname: a.example.com",
        protected="sslCertPemFile: cert.pem\nsslKeyPemFile: key.pem",
    )
    root = write_repo(tmp_path, {F: text, "cert.pem": cert, "key.pem": other_key})
    assert errors(load(root)) == [
        f"{root}/{F}:13: spec.configProtected.sslKeyPemFile: the file is not the private "
        "key of the certificate in sslCertPemFile"
    ]


def test_protected_settings_belong_under_config_protected(tmp_path: Path) -> None:
    config = TRAINING + "sslKeyPemFile: key.pem"
    assert run(tmp_path, config) == [
        f"{F}:9: spec.config.sslKeyPemFile: sslKeyPemFile belongs under spec.configProtected "
        "so that it is never printed"
    ]


def test_internal_load_balancer_only_on_managed_clusters_with_load_balancer(
    tmp_path: Path,
) -> None:
    config = (
        "enableInference: true\nallowInsecureConnections: true\n"
        "inferenceRouterServiceType: {kind}\ninternalLoadBalancerProvider: azure"
    )
    assert run(tmp_path, config.format(kind="LoadBalancer"), cluster_type="connectedClusters") == [
        f"{F}:11: spec.config.internalLoadBalancerProvider: only for clusterType managedClusters "
        "(this one is connectedClusters)"
    ]
    assert run(tmp_path, config.format(kind="NodePort")) == [
        f"{F}:11: spec.config.internalLoadBalancerProvider: only with "
        "inferenceRouterServiceType LoadBalancer (this one is NodePort)"
    ]
    assert run(tmp_path, config.format(kind="LoadBalancer")) == []


def test_older_aliases_are_mapped_with_a_warning(tmp_path: Path) -> None:
    config = (
        "enableTraining: true\nenableInference: true\nallowInsecureConnections: true\n"
        "inferenceRouterServiceType: ClusterIP\ninferenceLoadBalancerHA: false\n"
        "reuseExistingPromOp: true\nvolcanoScheduler.enable: false"
    )
    root = write_repo(tmp_path, {F: extension(config)})
    loaded = load(root)
    assert loaded.valid
    assert [p.line for p in loaded.problems] == [12, 13, 14]
    assert all("warning: deprecated name" in line for line in lines(loaded))
    values = loaded.repo.extensions["azureml-extension"].settings
    assert values["inferenceRouterHA"] is False
    assert values["installPromOp"] is False
    assert values["installVolcano"] is False


def test_alias_and_new_name_together_is_an_error(tmp_path: Path) -> None:
    config = TRAINING + "installVolcano: true\nvolcanoScheduler:\n  enable: false"
    assert run(tmp_path, config) == [
        f"{F}:11: spec.config.volcanoScheduler.enable: warning: deprecated name from the older "
        "documentation: use installVolcano",
        f"{F}:11: spec.config.volcanoScheduler.enable: installVolcano is given twice "
        "(also as spec.config.installVolcano)",
    ]


def test_node_selector_as_map_and_flat_entries(tmp_path: Path) -> None:
    config = TRAINING + "nodeSelector:\n  pool: gpu\nnodeSelector.accelerator: nvidia"
    root = write_repo(tmp_path, {F: extension(config)})
    loaded = load(root)
    assert loaded.problems == []
    assert loaded.repo.extensions["azureml-extension"].settings.node_selector == {
        "accelerator": "nvidia",
        "pool": "gpu",
    }


def test_node_selector_must_be_a_map(tmp_path: Path) -> None:
    assert run(tmp_path, TRAINING + "nodeSelector: gpu") == [
        f"{F}:9: spec.config.nodeSelector: must be a map of node label to value"
    ]


def test_setting_for_a_disabled_scenario_warns(tmp_path: Path) -> None:
    assert run(tmp_path, TRAINING + "inferenceRouterHA: false") == [
        f"{F}:9: spec.config.inferenceRouterHA: warning: has no effect: it applies to "
        "inference, which this extension does not enable"
    ]


def test_older_only_settings_are_accepted(tmp_path: Path) -> None:
    config = TRAINING + "openshift: true\nblobCsiDriverEnabled: true\nlogAnalyticsWS: 'False'"
    root = write_repo(tmp_path, {F: extension(config)})
    loaded = load(root)
    assert loaded.problems == []
    values = loaded.repo.extensions["azureml-extension"].settings
    assert (values["openshift"], values["blobCsiDriverEnabled"], values["logAnalyticsWS"]) == (
        True,
        True,
        False,
    )


def test_defaults_follow_the_table() -> None:
    assert settings.defaults()["inferenceRouterHA"] is True
    assert settings.defaults()["installPromOp"] is True
    assert settings.defaults()["installVolcano"] is True
    assert settings.defaults()["installDcgmExporter"] is False
    assert settings.defaults()["allowInsecureConnections"] is False
