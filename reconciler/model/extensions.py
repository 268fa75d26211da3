"""The Extension manifest as a typed model: name, cluster type, namespace, settings, TLS files.

Builds on `settings` (parsing and cross-field rules) and `tls` (PEM checks): the protected PEM
files are resolved relative to the manifest's folder and read through the snapshot (decrypted in
memory when SOPS-encrypted, see `decryption`), and any problem with them is reported at the field
without a byte of their content and without the value as written: whatever a protected value
holds, even a path, no message, record or Event repeats it. A protected value given as
`{secretRef: {name, key}}` is kept as a `settings.SecretRef`: the engine reads it from the
cluster at apply time, and the offline commands say so in a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler import source
from reconciler.model import decryption, manifests, problems, settings, sops, tls

EXTENSION_TYPE = "Microsoft.AzureML.Kubernetes"
DEFAULT_NAMESPACE = "azureml"
MANAGED = "managedClusters"
CONNECTED = "connectedClusters"
# Appended where a message is about a protected value: the reader knows it was left out.
_NOT_SHOWN = " (protected: the value is not shown)"
_REFUSED = (
    "the file it names is not read: a symlink leading out of the repo, in a loop or to nothing, "
    "or no regular file (a FIFO, a socket, a device)"
)
_TOO_LARGE = f"the file it names is larger than the {source.MAX_FILE_BYTES:,} bytes a file may be"
_SecretRef = settings.SecretRef  # the dataclass below has a field named `settings`


@dataclass(frozen=True)
class Extension:
    name: str
    cluster_type: str
    release_namespace: str
    settings: settings.Settings
    # Snapshot paths of the protected PEM files (never their content).
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    # Protected values kept in cluster Secrets (read at apply time), by setting name.
    secret_refs: tuple[tuple[str, _SecretRef], ...] = ()
    manifest: manifests.Manifest | None = field(default=None, compare=False, repr=False)


def build(
    manifest: manifests.Manifest, snapshot: source.Snapshot
) -> tuple[Extension, list[problems.Problem]]:
    """A schema-valid Extension manifest -> `Extension`, with every settings problem."""
    spec = manifest.fields["spec"]
    cluster_type = spec["clusterType"]
    parsed, found = settings.parse(
        spec.get("config") or {}, spec.get("configProtected") or {}, manifest.document
    )
    found.extend(settings.check_rules(parsed, cluster_type, manifest.document))
    refs = tuple(
        (name, parsed[name])
        for name in ("sslCertPemFile", "sslKeyPemFile")
        if isinstance(parsed[name], settings.SecretRef)
    )
    for name, ref in refs:
        found.append(
            manifest.document.problem(
                parsed.given[name],
                f"comes from the cluster at apply time ({ref} in namespace "
                f"{spec.get('releaseNamespace', DEFAULT_NAMESPACE)}): not checked offline",
                problems.Severity.NOTE,
            )
        )
    cert = _pem_path(manifest, snapshot, parsed, "sslCertPemFile", found)
    key = _pem_path(manifest, snapshot, parsed, "sslKeyPemFile", found)
    _check_pem_files(manifest, snapshot, parsed, cert, key, found)
    extension = Extension(
        name=manifest.name,
        cluster_type=cluster_type,
        release_namespace=spec.get("releaseNamespace", DEFAULT_NAMESPACE),
        settings=parsed,
        ssl_cert_file=cert,
        ssl_key_file=key,
        secret_refs=refs,
        manifest=manifest,
    )
    return extension, found


def _pem_path(
    manifest: manifests.Manifest,
    snapshot: source.Snapshot,
    parsed: settings.Settings,
    name: str,
    found: list[problems.Problem],
) -> str | None:
    """The snapshot path of a protected PEM file, checked to exist; None if unset or missing."""
    given = parsed[name]
    if given is None or isinstance(given, settings.SecretRef):
        return None
    where = parsed.given[name]
    path = source.join(manifest.folder, given)
    if path is None:
        found.append(manifest.document.problem(where, f"is outside the repo{_NOT_SHOWN}"))
        return None
    if not snapshot.exists(path) or snapshot.is_dir(path):
        folder = f"{manifest.folder}/" if manifest.folder else "the repo's root"
        message = f"no such file relative to {folder}{_NOT_SHOWN}"
        found.append(manifest.document.problem(where, message))
        return None
    if snapshot.refusals(path):  # why names the path (or its symlink's target): not shown
        found.append(manifest.document.problem(where, f"{_REFUSED}{_NOT_SHOWN}"))
        return None
    return path


def _check_pem_files(
    manifest: manifests.Manifest,
    snapshot: source.Snapshot,
    parsed: settings.Settings,
    cert: str | None,
    key: str | None,
    found: list[problems.Problem],
) -> None:
    """Each PEM file parses on its own; when both do, the key belongs to the certificate."""

    def usable(path: str | None, name: str, problem_of: Callable[[bytes], str | None]) -> bytes:
        """The file's bytes when it is usable, else b"" (with the problem recorded)."""
        if path is None:
            return b""
        if decryption.is_opaque(snapshot, path):
            note = "the file is SOPS-encrypted and no key was given: not checked"
            found.append(
                manifest.document.problem(parsed.given[name], note, problems.Severity.NOTE)
            )
            return b""
        try:
            pem = snapshot.read_bytes(path)
        except sops.SopsError as err:
            shown = f"the file it names: {err.message}"
            found.append(manifest.document.problem(parsed.given[name], shown))
            return b""
        except source.RefusedFile:  # larger than source.MAX_FILE_BYTES
            found.append(manifest.document.problem(parsed.given[name], f"{_TOO_LARGE}{_NOT_SHOWN}"))
            return b""
        problem = problem_of(pem)
        if problem is None:
            return pem
        shown = f"the file {problem}"
        found.append(manifest.document.problem(parsed.given[name], shown))
        return b""

    cert_pem = usable(cert, "sslCertPemFile", tls.certificate_problem)
    key_pem = usable(key, "sslKeyPemFile", tls.private_key_problem)
    if cert_pem and key_pem and not tls.key_matches_certificate(cert_pem, key_pem):
        mismatch = "the file is not the private key of the certificate in sslCertPemFile"
        found.append(manifest.document.problem(parsed.given["sslKeyPemFile"], mismatch))
