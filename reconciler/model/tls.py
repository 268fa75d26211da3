"""Checks on the router's TLS material (the protected `sslCertPemFile` / `sslKeyPemFile`).

Pure functions of the PEM bytes. Every message here is safe to print: it says what is wrong with
the material, never any of its content. `cryptography` is imported by the checks themselves:
most extensions carry no TLS material, and every command that loads a repository would
otherwise pay for importing it at start-up.
"""

from __future__ import annotations


def certificate_problem(pem: bytes) -> str | None:
    """Why `pem` is not a usable PEM certificate, or None when it is."""
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        return "is not a PEM certificate (no BEGIN CERTIFICATE block)"
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        return "holds a certificate block that does not parse"
    return None


def private_key_problem(pem: bytes) -> str | None:
    """Why `pem` is not a usable, unencrypted PEM private key, or None when it is."""
    if b"ENCRYPTED" in pem:
        return "is passphrase-protected, which is not supported: give the key without a passphrase"
    if b"PRIVATE KEY-----" not in pem:
        return "is not a PEM private key (no BEGIN ... PRIVATE KEY block)"
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        return "is passphrase-protected, which is not supported: give the key without a passphrase"
    except (ValueError, x509.UnsupportedGeneralNameType):
        return "holds a private key block that does not parse"
    except Exception as err:
        return f"holds a private key that cannot be read ({type(err).__name__})"
    return None


def key_matches_certificate(cert_pem: bytes, key_pem: bytes) -> bool:
    """The key is the private half of the first certificate's public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt))
