"""The four documented scenarios are valid, and parse to what they say.

The scenarios: `docs/domain.md#scenarios`.
"""

from pathlib import Path

import pytest

from tests.helpers import SCENARIOS, lines, load, scenario_repo


@pytest.mark.parametrize("name", SCENARIOS)
def test_documented_scenario_is_valid(tmp_path: Path, name: str) -> None:
    loaded = load(scenario_repo(tmp_path, name))
    assert lines(loaded) == []
    (extension,) = loaded.repo.extensions.values()
    values = extension.settings
    if name == "quickstart":
        assert (values.training, values.inference, values.https) == (True, True, False)
        assert values["inferenceRouterHA"] is False
    elif name == "onprem-training":
        assert extension.cluster_type == "connectedClusters"
        assert (values.training, values.inference) == (True, False)
    elif name == "production-https":
        assert values.https
        assert (extension.ssl_cert_file, extension.ssl_key_file) == (
            "certs/cert.pem",
            "certs/key.pem",
        )
    else:
        assert values["inferenceRouterServiceType"] == "NodePort"
        assert values.node_selector == {"accelerator": "nvidia", "pool": "gpu"}
        assert values["installNvidiaDevicePlugin"] and values["installDcgmExporter"]
