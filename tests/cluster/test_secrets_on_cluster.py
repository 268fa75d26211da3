"""Protected TLS material the GitOps way, against the real API server: a SOPS/age-encrypted
key in the repo and a `secretRef` to a Secret already in the cluster both end up, byte for byte,
in the router's TLS Secret; a wrong key, a tampered file and a missing Secret apply nothing; the
key's PEM never appears in the command's output.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from kubernetes import client

from reconciler.cli import main as cli
from tests.helpers import example_repo, self_signed_pem, set_config
from tests.sopsfixtures import age_key, encrypt

pytestmark = pytest.mark.cluster
HTTPS = "sslCname: ml.example.com"
ROUTER_TLS = "azureml-fe-v2-tls"


def run(kubeconfig: str | None, *args: str) -> Result:
    options = ["--kubeconfig", kubeconfig] if kubeconfig else []
    return CliRunner().invoke(cli.main, [*args, *options])


def https_repo(tmp_path: Path, name: str, namespace: str, protected: str) -> Path:
    root = example_repo(tmp_path, name, namespace, jobs=False)
    set_config(root, "    allowInsecureConnections: true\n", f"    {HTTPS}\n")
    extension = root / "infra/extension.yaml"
    extension.write_text(extension.read_text() + f"  configProtected:\n{protected}")
    return root


def pem_files(root: Path) -> tuple[bytes, bytes]:
    cert, key = self_signed_pem()
    (root / "infra/certs").mkdir()
    (root / "infra/certs/cert.pem").write_bytes(cert)
    (root / "infra/certs/key.pem").write_bytes(key)
    return cert, key


FILES = "    sslCertPemFile: certs/cert.pem\n    sslKeyPemFile: certs/key.pem\n"


def router_tls(api_client: client.ApiClient, namespace: str) -> dict[str, bytes] | None:
    core = client.CoreV1Api(api_client)
    found = core.list_namespaced_secret(namespace, field_selector=f"metadata.name={ROUTER_TLS}")
    if not found.items:
        return None
    return {k: base64.b64decode(v) for k, v in found.items[0].data.items()}


def nothing_applied(api_client: client.ApiClient, namespace: str) -> bool:
    apps = client.AppsV1Api(api_client)
    return not apps.list_namespaced_deployment(namespace).items and (
        router_tls(api_client, namespace) is None
    )


def assert_no_plaintext(output: str, pem: bytes) -> None:
    for line in pem.decode().splitlines():
        if "-----" not in line:
            assert line not in output


def test_an_age_encrypted_tls_key_applies(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, api_client: client.ApiClient
) -> None:
    name = f"s{namespace[-6:]}"
    root = https_repo(tmp_path, name, namespace, FILES)
    cert, pem = pem_files(root)
    key = age_key()
    encrypt(root / "infra/certs/key.pem", key)
    assert pem not in (root / "infra/certs/key.pem").read_bytes()
    key_file = key.write(tmp_path / "age.agekey")

    # A wrong key and a tampered file: a FILE:LINE problem, nothing applied.
    wrong = age_key().write(tmp_path / "wrong.agekey")
    refused = run(cluster_kubeconfig, "apply", str(root), "--decryption-key", str(wrong))
    assert refused.exit_code == 1, refused.output
    assert f"{root}/infra/extension.yaml:" in refused.output
    assert "no given age identity is one of its recipients" in refused.output
    assert nothing_applied(api_client, namespace)

    stored = json.loads((root / "infra/certs/key.pem").read_text())
    intact = json.dumps(stored)
    stored["sops"]["lastmodified"] = "2020-01-01T00:00:00Z"  # the MAC no longer opens
    (root / "infra/certs/key.pem").write_text(json.dumps(stored))
    tampered = run(cluster_kubeconfig, "apply", str(root), "--decryption-key", str(key_file))
    assert tampered.exit_code == 1, tampered.output
    assert "tampered" in tampered.output
    assert nothing_applied(api_client, namespace)
    (root / "infra/certs/key.pem").write_text(intact)

    applied = run(cluster_kubeconfig, "apply", str(root), "--decryption-key", str(key_file))
    assert applied.exit_code == 0, applied.output
    assert router_tls(api_client, namespace) == {"cert.pem": cert, "key.pem": pem}
    planned = run(cluster_kubeconfig, "plan", str(root), "--decryption-key", str(key_file))
    assert planned.exit_code == 0, planned.output
    for output in (refused.output, tampered.output, applied.output, planned.output):
        assert_no_plaintext(output, pem)


def test_a_secret_ref_is_read_from_the_cluster_at_apply_time(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, api_client: client.ApiClient
) -> None:
    name = f"r{namespace[-6:]}"
    refs = (
        "    sslCertPemFile: {secretRef: {name: my-tls, key: tls.crt}}\n"
        "    sslKeyPemFile: {secretRef: {name: my-tls, key: tls.key}}\n"
    )
    root = https_repo(tmp_path, name, namespace, refs)
    validated = run(None, "validate", str(root))
    assert validated.exit_code == 0, validated.output
    assert "note: comes from the cluster at apply time (Secret my-tls, key tls.key" in (
        validated.output
    )

    missing = run(cluster_kubeconfig, "apply", str(root))
    assert missing.exit_code == 2, missing.output
    assert "secretRef names Secret" in missing.output and "my-tls, which does not exist" in (
        missing.output
    )
    assert nothing_applied(api_client, namespace)

    cert, pem = self_signed_pem()
    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="my-tls"),
            type="kubernetes.io/tls",
            data={
                "tls.crt": base64.b64encode(cert).decode(),
                "tls.key": base64.b64encode(pem).decode(),
            },
        ),
    )
    applied = run(cluster_kubeconfig, "apply", str(root))
    assert applied.exit_code == 0, applied.output
    assert router_tls(api_client, namespace) == {"cert.pem": cert, "key.pem": pem}
    assert_no_plaintext(applied.output, pem)
    rendered = run(None, "render", str(root))
    assert rendered.exit_code == 0 and "gitops.mlext.io/secret-refs" in rendered.output


def test_the_controller_takes_its_key_from_a_secret_and_logs_no_plaintext(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, api_client: client.ApiClient
) -> None:
    """`reconciler sync --decryption-secret NAME` (as the controller runs) reads the age
    identity from a Secret's `*.agekey` key, as Flux does; its logs, at DEBUG, hold no line of
    the decrypted key."""
    import subprocess
    import sys

    import git

    name = f"c{namespace[-6:]}"
    root = https_repo(tmp_path, name, namespace, FILES)
    cert, pem = pem_files(root)
    key = age_key()
    encrypt(root / "infra/certs/key.pem", key)
    repository = git.Repo.init(root, initial_branch="main")
    with repository.config_writer() as config:
        config.set_value("user", "name", "t")
        config.set_value("user", "email", "t@example.com")
    repository.git.add(A=True)
    repository.index.commit("encrypted key")
    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="sops-age"),
            data={"age.agekey": base64.b64encode(key.identity.encode()).decode()},
        ),
    )
    command = [sys.executable, "-m", "reconciler", "sync", "--repo", str(root), "--once", "-v"]
    command += ["--cache-dir", str(tmp_path / "cache"), "--decryption-secret", "sops-age"]
    command += ["--lease-namespace", namespace]
    if cluster_kubeconfig:
        command += ["--kubeconfig", cluster_kubeconfig]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert router_tls(api_client, namespace) == {"cert.pem": cert, "key.pem": pem}
    assert_no_plaintext(done.stdout + done.stderr, pem)


def test_a_pasted_key_is_refused_and_appears_in_no_output_record_or_event(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, api_client: client.ApiClient
) -> None:
    """A PEM pasted as a protected value (not a file path) is refused by its shape, and no
    output, ExtensionStatus record, Event or `status` line repeats a byte of it."""
    name = f"p{namespace[-6:]}"
    root = https_repo(tmp_path, name, namespace, FILES)
    pem_files(root)
    applied = run(cluster_kubeconfig, "apply", str(root))
    assert applied.exit_code == 0, applied.output

    _, pasted = self_signed_pem()
    extension = root / "infra/extension.yaml"
    indented = "".join(f"      {line}\n" for line in pasted.decode().splitlines())
    extension.write_text(
        extension.read_text().replace(
            "    sslKeyPemFile: certs/key.pem\n", f"    sslKeyPemFile: |\n{indented}"
        )
    )
    outputs = [run(None, verb, str(root)) for verb in ("validate", "render")]
    outputs.append(run(cluster_kubeconfig, "apply", str(root)))
    for result in outputs:
        assert result.exit_code == 1, result.output
        assert "spec.configProtected.sslKeyPemFile: holds key material, not a path" in (
            result.output
        )
    status = run(cluster_kubeconfig, "status")
    live = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        "gitops.mlext.io", "v1alpha1", "extensionstatuses", name
    )
    assert any("holds key material" in p for p in live["status"]["problems"])
    events = client.CoreV1Api(api_client).list_event_for_all_namespaces()
    messages = "\n".join(str(e.message) for e in events.items)
    for text in (*(r.output for r in outputs), status.output, json.dumps(live), messages):
        assert_no_plaintext(text, pasted)
