"""`configProtected` values given as `{secretRef: {name, key}}`: offline, with no cluster.

`validate` notes that the value comes from the cluster and does not fail; `render` leaves the
value empty and names its source in the Secret's annotation, which `engine.secretrefs` reads
back (the cluster half, filling it in at apply time, is in tests/cluster/test_secrets_on_cluster).
A malformed reference is a `FILE:LINE` problem.
"""

from pathlib import Path

from click.testing import CliRunner

from reconciler import source
from reconciler.cli import main as cli
from reconciler.engine import secretrefs
from reconciler.render import render
from tests.helpers import errors, extension, lines, load, self_signed_pem, write_repo

HTTPS = "enableInference: true\ninferenceRouterServiceType: NodePort\nsslCname: ml.example.com\n"
F = "extension.yaml"


def _repo(tmp_path: Path, protected: str) -> Path:
    cert, _ = self_signed_pem()
    files = {F: extension(HTTPS, protected=protected), "certs/cert.pem": cert}
    return write_repo(tmp_path, files)


def test_validate_notes_the_cluster_value_and_render_names_it(tmp_path: Path) -> None:
    root = _repo(
        tmp_path,
        "sslCertPemFile: certs/cert.pem\nsslKeyPemFile: {secretRef: {name: my-tls, key: tls.key}}",
    )
    loaded = load(root)
    assert loaded.valid
    assert lines(loaded) == [
        f"{root}/{F}:13: spec.configProtected.sslKeyPemFile: note: comes from the cluster at "
        "apply time (Secret my-tls, key tls.key in namespace azureml): not checked offline"
    ]
    rendered = render.render_repo(loaded.repo, source.DirectorySnapshot(root), "x").objects
    (secret,) = [o for o in rendered if o["kind"] == "Secret"]
    assert secret["data"]["key.pem"] == render.SECRET_REF_PLACEHOLDER
    assert secret["data"]["cert.pem"]  # the file in the repo, as before
    assert secretrefs.references(secret) == [
        secretrefs.Reference("key.pem", "azureml", "my-tls", "tls.key")
    ]
    printed = CliRunner().invoke(cli.main, ["render", str(root)])
    assert printed.exit_code == 0, printed.output
    assert "gitops.mlext.io/secret-refs" in printed.output


def test_a_malformed_reference_is_a_problem(tmp_path: Path) -> None:
    root = _repo(
        tmp_path,
        "sslCertPemFile: certs/cert.pem\nsslKeyPemFile: {secretRef: {name: my-tls}}",
    )
    assert errors(load(root)) == [
        f"{root}/{F}:13: spec.configProtected.sslKeyPemFile.secretRef.key: required field is "
        "missing"
    ]
