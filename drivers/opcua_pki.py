"""OPC UA application certificates and trust lists, for every OPC UA party of ours.

The daemon's operator server, the daemon's link to the bioreactor controller and the simulated
controller all need the same two things: an application certificate of their own, made on first
start, and a trust list of the peers they admit. They live here, below the daemon and the
simulators, because `simulators/` may not import `shuttled/`.

The layout is the one other OPC UA applications use, so an administrator who has managed
UaExpert's or a PLC's trust list knows what to do: `own/` (cert.der, key.pem), `trusted/` (the
peers' certificates, read at every check, so a certificate copied there counts from the next
connection on, without a restart) and `rejected/` (an unknown peer's certificate, kept so that
an administrator can check its thumbprint and copy it to `trusted/`).
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

log = structlog.get_logger("opcua.pki")

CERT_DAYS = 5 * 365


@dataclass(frozen=True)
class OwnCertificate:
    certificate: Path  # DER
    private_key: Path  # PEM, mode 0600


def write_private(path: Path, data: bytes) -> None:
    """A private key file readable by its owner only, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def application_uris(der: bytes) -> list[str]:
    """The application URIs a certificate names (its subjectAltName URIs); [] if none."""
    try:
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def _still_valid(path: Path, application_uri: str) -> bool:
    try:
        der = path.read_bytes()
        cert = x509.load_der_x509_certificate(der)
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc > datetime.now(UTC) and application_uri in application_uris(
        der
    )


def own_paths(own_dir: Path) -> OwnCertificate:
    """Where an application's certificate and key are (whether made yet or not)."""
    return OwnCertificate(own_dir / "cert.der", own_dir / "key.pem")


def ensure_certificate(
    own_dir: Path, application_uri: str, common_name: str, server: bool
) -> OwnCertificate:
    """The application's certificate and key, created self-signed when missing or expired."""
    own_dir.mkdir(parents=True, exist_ok=True)
    paths = own_paths(own_dir)
    if paths.private_key.exists() and _still_valid(paths.certificate, application_uri):
        return paths
    key = generate_private_key()
    host = socket.gethostname()
    cert = generate_self_signed_app_certificate(
        key,
        common_name,
        {"organizationName": "Cell Shuttle"},
        [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host),
         x509.DNSName("localhost")],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH],
        days=CERT_DAYS,
    )
    write_private(paths.private_key, dump_private_key_as_pem(key))
    paths.certificate.write_bytes(cert.public_bytes(Encoding.DER))
    log.info("certificate created", path=str(paths.certificate), uri=application_uri)
    return paths


def thumbprint(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest()  # the OPC UA thumbprint is SHA-1 by definition


def load_der(path: Path) -> bytes | None:
    """A certificate file (DER or PEM) as DER; None if it is not a certificate."""
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError:
        return None


def outside_validity(der: bytes) -> str | None:
    """Why a certificate is not valid now ("valid from ... to ..."), or None if it is."""
    cert = x509.load_der_x509_certificate(der)
    if cert.not_valid_before_utc <= datetime.now(UTC) <= cert.not_valid_after_utc:
        return None
    return (f"valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now")


def copy_into(certificate: Path, trusted_dir: Path) -> Path:
    """What an administrator does to admit a peer: copy its certificate into `trusted/` (named by
    its common name and thumbprint, so two peers' `cert.der` do not overwrite each other)."""
    der = load_der(certificate)
    if der is None:
        raise ValueError(f"{certificate}: not a certificate")
    trusted_dir.mkdir(parents=True, exist_ok=True)
    target = trusted_dir / _file_label(der)
    target.write_bytes(der)
    return target


def _file_label(der: bytes) -> str:
    """A file name an administrator recognises: the common name and the thumbprint."""
    try:
        names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
            x509.NameOID.COMMON_NAME
        )
    except ValueError:
        names = []
    name = str(names[0].value) if names else "peer"
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"{label} [{thumbprint(der)}].der"


class TrustList:
    """Peers admitted by exact certificate: `trusted/` is read at every check (so it is current),
    an unknown certificate is copied to `rejected/` for an administrator to check.

    Also an asyncua certificate validator (`Server.set_certificate_validator`): a client that is
    neither trusted nor admitted by `admit_untrusted` is refused with BadCertificateUntrusted.
    """

    def __init__(self, pki_dir: Path) -> None:
        self.trusted_dir = pki_dir / "trusted"
        self.rejected_dir = pki_dir / "rejected"
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)

    def _trusted(self) -> set[bytes]:
        found = set()
        for path in self.trusted_dir.iterdir():
            if path.is_file():
                der = load_der(path)
                if der is not None:
                    found.add(der)
        return found

    def is_trusted(self, der: bytes) -> bool:
        return der in self._trusted()

    def reject(self, der: bytes) -> Path:
        """Keep an unknown certificate in `rejected/`; the path an administrator looks at."""
        target = self.rejected_dir / _file_label(der)
        target.write_bytes(der)
        return target

    def admit_untrusted(self) -> bool:
        """Whether to admit a peer whose certificate is not trusted (never, by default)."""
        return False

    def refused(self, copied_to: Path) -> None:
        log.warning("certificate refused: not in the trust list", copied_to=str(copied_to),
                    trust_it_by_copying_to=str(self.trusted_dir))

    async def __call__(self, cert: x509.Certificate, app_description: Any) -> None:
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid)
        der = cert.public_bytes(Encoding.DER)
        if self.is_trusted(der) or self.admit_untrusted():
            return
        self.refused(self.reject(der))
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
