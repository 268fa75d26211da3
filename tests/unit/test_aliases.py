"""A deprecated alias changes nothing but its own setting (`docs/domain.md#aliases`).

Each older name is written into a repo, and the same repo is written again with the current
name and value: the two renders must be identical object for object, so fixing a key's spelling
never renames the router or adds the older generation's components. The older component set
renders only by the explicit opt-in `componentGeneration: older` or an older-only setting.
"""

from pathlib import Path

import pytest

from reconciler import objects, source
from reconciler.render import render
from tests.helpers import extension, load, self_signed_pem, write_repo

BASE = (
    "enableTraining: true\nenableInference: true\ninferenceRouterServiceType: NodePort\n"
    "sslCname: ml.example.com\n"
)

# (alias as written, the same setting as the current name writes it)
ALIASES = [
    ("inferenceLoadBalancerHA: false", "inferenceRouterHA: false", ""),
    ("reuseExistingPromOp: true", "installPromOp: false", ""),
    ("volcanoScheduler.enable: false", "installVolcano: false", ""),
    ("volcanoScheduler:\n  enable: false", "installVolcano: false", ""),
    ("", "", "sslCertKeyFile: certs/key.pem"),
]


def _render(root: Path) -> list[objects.Object]:
    loaded = load(root)
    assert loaded.valid, [str(p) for p in loaded.problems]
    snapshot = source.DirectorySnapshot(root)
    return render.render_repo(loaded.repo, snapshot, "unversioned").objects


def _repo(root: Path, config: str, key_setting: str) -> Path:
    cert, key = self_signed_pem()
    protected = f"sslCertPemFile: certs/cert.pem\n{key_setting}"
    files = {
        "extension.yaml": extension(BASE + config, protected=protected),
        "certs/cert.pem": cert,
        "certs/key.pem": key,
    }
    return write_repo(root, files)


@pytest.mark.parametrize(("older", "current", "older_key"), ALIASES)
def test_alias_renders_exactly_as_the_current_name(
    tmp_path: Path, older: str, current: str, older_key: str
) -> None:
    cert_and_key = self_signed_pem()
    with_alias = _repo(tmp_path / "alias", older, older_key or "sslKeyPemFile: certs/key.pem")
    with_current = _repo(tmp_path / "current", current, "sslKeyPemFile: certs/key.pem")
    for root in (with_alias, with_current):  # the same key material in both repos
        (root / "certs/cert.pem").write_bytes(cert_and_key[0])
        (root / "certs/key.pem").write_bytes(cert_and_key[1])
    warnings = [str(p) for p in load(with_alias).problems]
    assert len(warnings) == 1 and "warning: deprecated name" in warnings[0]
    rendered = _render(with_alias)
    assert objects.to_yaml(rendered) == objects.to_yaml(_render(with_current))
    names = {o["metadata"]["name"] for o in rendered}
    assert "azureml-fe-v2" in names
    assert not names & {"azureml-fe", "cluster-status-reporter", "k8s-host-device-plugin-daemonset"}


def test_the_older_component_set_is_an_explicit_opt_in(tmp_path: Path) -> None:
    root = _repo(tmp_path, "componentGeneration: older", "sslKeyPemFile: certs/key.pem")
    names = {(o["kind"], o["metadata"]["name"]) for o in _render(root)}
    assert ("Deployment", "azureml-fe") in names
    assert ("Deployment", "azureml-fe-v2") not in names
    assert ("Deployment", "cluster-status-reporter") in names
    assert ("DaemonSet", "k8s-host-device-plugin-daemonset") in names
