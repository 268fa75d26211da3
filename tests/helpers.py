"""Test helpers shared by every test folder: repos written to disk (and committed with git),
problems looked up, a stand-in HTTP server on loopback, a port that refuses connections, and
`Received`, a notification receiver's record with the checks a generic-hmac, Slack and Teams
receiver make.

`write_repo` builds a manifests repo from a {path: text} mapping, `scenario_repo` writes one of the
four documented extension scenarios (`docs/domain.md#scenarios`), with a freshly generated
self-signed certificate and key where the scenario uses PEM files, so no key material lives in the
repo.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import http.server
import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import git
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reconciler import source
from reconciler.engine import reconcile, recordstore
from reconciler.model import repo

EXAMPLE = Path(__file__).resolve().parents[1] / "manifests"

API = "gitops.mlext.io/v1alpha1"
# YAML that is no manifest (a CI workflow), and YAML that would be an error wherever a manifest
# is read: what the repo-contents tests place where the reconciler must or must not look.
GITHUB_WORKFLOW = """
name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: pytest
"""
BROKEN = "kind: Nonsense\n---\nnot: [closed\n"


def write_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(textwrap.dedent(content).lstrip("\n"))
    return root


def reconciler(*args: str, cwd: Path, **bounds: Any) -> subprocess.CompletedProcess[str]:
    """The `reconciler` command as a user runs it: a process of its own in `cwd`, its output
    captured as text; `bounds` are more of `subprocess.run`'s arguments (a timeout, limits)."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        **bounds,
    )


def git_work_tree(root: Path) -> git.Repo:
    """The git work tree at `root` (made when there is none), with a committer and no signing,
    so that commits work on any machine."""
    work_tree = git.Repo(root) if (root / ".git").exists() else git.Repo.init(root)
    with work_tree.config_writer() as config:
        config.set_value("user", "name", "Test")
        config.set_value("user", "email", "test@example.com")
        config.set_value("commit", "gpgsign", "false")
    return work_tree


def commit_all(root: Path, message: str = "initial") -> git.Repo:
    """Everything below `root` committed, in the work tree there (made when there is none)."""
    work_tree = git_work_tree(root)
    work_tree.git.add("-A")
    work_tree.git.commit("-q", "-m", message)
    return work_tree


def load(root: Path) -> repo.Loaded:
    return repo.load(source.DirectorySnapshot(root))


def lines(loaded: repo.Loaded) -> list[str]:
    """Every problem as the user sees it, with the repo root cut from the file names."""
    return [str(p) for p in loaded.problems]


def errors(loaded: repo.Loaded) -> list[str]:
    return [str(p) for p in loaded.errors]


def extension(config: str, *, cluster_type: str = "managedClusters", protected: str = "") -> str:
    """An Extension manifest with `config` (YAML lines) under spec.config."""
    body = textwrap.indent(textwrap.dedent(config).strip("\n"), "    ")
    text = (
        f"apiVersion: {API}\n"
        "kind: Extension\n"
        "metadata:\n"
        "  name: azureml-extension\n"
        "spec:\n"
        f"  clusterType: {cluster_type}\n"
        "  config:\n"
        f"{body}\n"
    )
    if protected:
        text += "  configProtected:\n" + textwrap.indent(textwrap.dedent(protected).strip(), "    ")
        text += "\n"
    return text


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed): a connection to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` answering on a free loopback port in a thread of its own, and its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


Request = tuple[str, dict[str, str], bytes]  # path, headers, body


class Received:
    """What a notification receiver on loopback got (`handler` answers for it): every POST, in
    order; the first `fail` are answered 503 and not kept."""

    def __init__(self, fail: int = 0) -> None:
        self.requests: list[Request] = []
        self.fail = fail
        self.arrived = threading.Condition()

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        received = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with received.arrived:
                    failing = received.fail > 0
                    if failing:
                        received.fail -= 1
                    else:
                        received.requests.append((self.path, dict(self.headers), body))
                        received.arrived.notify_all()
                self.send_response(503 if failing else 201 if "/statuses/" in self.path else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def wait(self, done: Any, timeout: float = 10.0) -> list[Request]:
        """The requests once `done(requests)` holds (or `timeout` passed): an int is a count."""
        check = (lambda r: len(r) >= done) if isinstance(done, int) else done
        with self.arrived:
            self.arrived.wait_for(lambda: check(self.requests), timeout)
            return list(self.requests)


def verified_generic(key: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What a generic-hmac receiver does: the signature first, then the JSON."""
    expected = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Signature"], expected)
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def verified_slack(body: bytes) -> dict[str, Any]:
    """An incoming webhook's shape: `text`, one coloured attachment with revision and source."""
    payload: dict[str, Any] = json.loads(body)
    assert isinstance(payload["text"], str) and payload["text"]
    (attachment,) = payload["attachments"]
    assert attachment["color"] in ("good", "danger")
    assert {f["title"] for f in attachment["fields"]} == {"revision", "source"}
    return payload


def verified_teams(body: bytes) -> dict[str, Any]:
    """A Teams message with one Adaptive Card: its card."""
    payload: dict[str, Any] = json.loads(body)
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["type"] == "TextBlock" and card["body"][1]["type"] == "FactSet"
    return card


# The extension most repo tests stand their workloads on: training and inference, the router
# behind a ClusterIP Service over plain HTTP.
EXTENSION = extension(
    "enableTraining: true\nenableInference: true\ninferenceRouterServiceType: ClusterIP\n"
    "allowInsecureConnections: true"
)


def self_signed_pem(
    common_name: str = "ml.example.com", passphrase: bytes | None = None
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a fresh self-signed EC certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


SCENARIOS = ("quickstart", "onprem-training", "production-https", "gpu-nodeport")


def scenario_repo(root: Path, name: str) -> Path:
    """One of the four documented scenarios (`docs/domain.md#scenarios`) as a repo under `root`."""
    if name == "quickstart":
        # A quick proof of concept: managed cluster, both workloads, plain HTTP, one router.
        text = extension(
            """
            enableTraining: True
            enableInference: True
            inferenceRouterServiceType: LoadBalancer
            allowInsecureConnections: True
            InferenceRouterHA: False
            """
        )
        return write_repo(root, {"extension.yaml": text})
    if name == "onprem-training":
        text = extension("enableTraining: True", cluster_type="connectedClusters")
        return write_repo(root, {"extension.yaml": text})
    if name == "production-https":
        cert, key = self_signed_pem()
        text = extension(
            """
            enableTraining: True
            enableInference: True
            inferenceRouterServiceType: LoadBalancer
            internalLoadBalancerProvider: azure
            sslCname: ml.example.com
            """,
            protected="""
            sslCertPemFile: certs/cert.pem
            sslKeyPemFile: certs/key.pem
            """,
        )
        return write_repo(
            root, {"extension.yaml": text, "certs/cert.pem": cert, "certs/key.pem": key}
        )
    if name == "gpu-nodeport":
        text = extension(
            """
            enableTraining: True
            enableInference: True
            inferenceRouterServiceType: NodePort
            sslSecret: azureml-router-tls
            sslCname: ml.example.com
            installNvidiaDevicePlugin: True
            installDcgmExporter: True
            nodeSelector.accelerator: nvidia
            nodeSelector.pool: gpu
            """,
            cluster_type="connectedClusters",
        )
        return write_repo(root, {"extension.yaml": text})
    raise ValueError(f"unknown scenario {name}")


def example_repo(tmp_path: Path, name: str, namespace: str, jobs: bool = True) -> Path:
    """The bundled example with its extension renamed and installed into `namespace`."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    extension = root / "infra" / "extension.yaml"
    text = extension.read_text()
    text = text.replace("name: azureml-extension", f"name: {name}")
    text = text.replace("releaseNamespace: azureml", f"releaseNamespace: {namespace}")
    extension.write_text(text)
    if not jobs:
        shutil.rmtree(root / "jobs")
    fit_on_one_node(root)
    return root


def set_config(root: Path, old: str, new: str) -> None:
    extension = root / "infra" / "extension.yaml"
    text = extension.read_text()
    assert old in text
    extension.write_text(text.replace(old, new))


# The bundled example's `cpusmall` requests 500m CPU: on the one real node of a 2-core machine
# a router, blue scaled to 5 and green's 2 replicas would not all be scheduled (Pending). The
# requests are lowered in the test's copy of the repo only; limits and the render are unchanged.
CPUSMALL_REQUESTS = ("cpu: 500m\n          memory: 1Gi", "cpu: 50m\n          memory: 128Mi")


# A deployment without an instance type gets `defaultinstancetype` (built in: 0.6 CPU). Green's
# two replicas, the rolling update's surge pod, blue and the router would not fit the node either,
# so the test's copy declares a small one of that name (as a user may).
SMALL_DEFAULT_TYPE = {
    "metadata": {"name": "defaultinstancetype"},
    "spec": {
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"cpu": "600m", "memory": "1536Mi"},
        }
    },
}


def instance_type(name: str, selector: str = "", gpus: int = 0, cpu: str = "1") -> str:
    """An InstanceType manifest: limits of `cpu`, 1Gi and `gpus` (requested at them) on the
    nodes `selector` (`key: value`, "" for any) matches."""
    limits = f"{{cpu: '{cpu}', memory: 1Gi{f', nvidia.com/gpu: {gpus}' if gpus else ''}}}"
    return f"""
        apiVersion: amlarc.azureml.com/v1alpha1
        kind: InstanceType
        metadata: {{name: {name}}}
        spec:
          nodeSelector: {{{selector}}}
          resources: {{limits: {limits}}}
        """


def fit_on_one_node(root: Path) -> None:
    """The repo's `cpusmall` instance type with small requests (see CPUSMALL_REQUESTS), and a
    small `defaultinstancetype` unless the repo declares one (see SMALL_DEFAULT_TYPE): what the
    cluster tests apply runs on the local plane's one real node (2 cores here), beside what the
    namespaces of earlier tests still hold while they are deleted."""
    types = root / "infra" / "instancetypes.yaml"
    if not types.is_file():
        return
    listed = yaml.safe_load(types.read_text().replace(*CPUSMALL_REQUESTS))
    if all(item["metadata"]["name"] != "defaultinstancetype" for item in listed["items"]):
        listed["items"].append(SMALL_DEFAULT_TYPE)
    types.write_text(yaml.safe_dump(listed, sort_keys=False))


class EngineStandIn(Protocol):
    """What stands in for the loop's planner and executor in a unit test of the loop."""

    def plan_each(self, *args: Any, **kwargs: Any) -> Iterator[reconcile.ExtensionPlan]: ...
    def carry_out_all(self, *args: Any, **kwargs: Any) -> list[reconcile.ExtensionResult]: ...
    def names(self, *args: Any) -> list[str]: ...


def stand_in_for_the_engine(monkeypatch: pytest.MonkeyPatch, fake: EngineStandIn) -> None:
    """The loop ticks with `fake` planning and carrying out, and no cluster behind the records."""
    monkeypatch.setattr(reconcile, "plan_each", fake.plan_each)
    monkeypatch.setattr(reconcile, "carry_out_all", fake.carry_out_all)
    monkeypatch.setattr(reconcile, "extension_names", fake.names)
    monkeypatch.setattr(recordstore, "read_records", lambda *a: {})
    monkeypatch.setattr(recordstore, "ensure_record_crd", lambda *a: None)


def ctrl_c_ends_it() -> None:
    """`preexec_fn` for a child process a test stops with SIGINT, as Ctrl-C would: SIGINT's
    default action back. A shell without job control starts a background command (`.ci/run &`)
    with SIGINT ignored, and every child inherits that, so the child would never see the test's
    Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
