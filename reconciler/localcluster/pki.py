"""Certificates and keys for one local control plane, made with ``cryptography``.

One self-signed CA signs the API server's serving certificate and a client certificate per
identity (admin, controller manager, scheduler, kwok). The service-account key pair signs and
verifies service-account tokens. Everything is written as PEM files into the plane's ``pki``
folder; nothing here starts a process.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate's subject: the user name (CN) and groups (O)."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


# The identities the plane's own components and its admin use. Kubernetes' default RBAC roles
# bind system:kube-controller-manager and system:kube-scheduler; system:masters is the admin group.
ADMIN = ClientIdentity("admin", "kubernetes-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
KWOK = ClientIdentity("kwok", "system:kwok-controller", ("system:masters",))
# The API server's own client identity towards aggregated API servers (front proxy).
FRONT_PROXY = ClientIdentity("front-proxy-client", "front-proxy-client")
# The API server's client identity towards kubelets (logs, exec, port-forward on real nodes).
APISERVER_KUBELET_CLIENT = ClientIdentity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client"
)
CLIENTS = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK, FRONT_PROXY, APISERVER_KUBELET_CLIENT)

APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class PkiPaths:
    """Where one plane's PEM files live."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.root / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.root / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"

    def client_cert(self, who: ClientIdentity) -> Path:
        return self.root / f"{who.file_stem}.crt"

    def client_key(self, who: ClientIdentity) -> Path:
        return self.root / f"{who.file_stem}.key"


def _name(common_name: str, groups: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: x509.Name, issuer: x509.Name, key: PrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA for one plane."""
    key = _new_key()
    name = _name("reconciler-localcluster-ca")
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    usage: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    builder = (
        _builder(subject, ca.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def apiserver_sans(service_ip: str) -> list[x509.GeneralName]:
    """The names the API server answers to: loopback, the in-cluster names and service IP."""
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in APISERVER_DNS_NAMES]
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(service_ip)),
    ]
    return names


def write_pki(paths: PkiPaths, service_ip: str) -> None:
    """Create the CA, the serving and client certificates and the service-account keys."""
    paths.root.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca()
    _write(paths.ca_cert, _cert_pem(ca))
    _write(paths.ca_key, _key_pem(ca_key), private=True)

    cert, key = _leaf(
        ca,
        ca_key,
        _name("kube-apiserver"),
        [ExtendedKeyUsageOID.SERVER_AUTH],
        apiserver_sans(service_ip),
    )
    _write(paths.apiserver_cert, _cert_pem(cert))
    _write(paths.apiserver_key, _key_pem(key), private=True)

    for who in CLIENTS:
        cert, key = _leaf(
            ca, ca_key, _name(who.user, who.groups), [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        _write(paths.client_cert(who), _cert_pem(cert))
        _write(paths.client_key(who), _key_pem(key), private=True)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(paths.sa_key, _key_pem(sa_key), private=True)
    _write(
        paths.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def issue_client_cert(paths: PkiPaths, who: ClientIdentity) -> tuple[bytes, bytes]:
    """A new client certificate and key (PEM) for ``who``, signed by the plane's CA on disk.

    For identities made after the plane started, such as a real node's kubelet
    (``system:node:<name>`` in ``system:nodes``) or its kube-proxy.
    """
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{paths.ca_key} is not the EC key this module makes")
    cert, key = _leaf(ca, ca_key, _name(who.user, who.groups), [ExtendedKeyUsageOID.CLIENT_AUTH])
    return _cert_pem(cert), _key_pem(key)
