"""Certificates: the server's own, made on first start, and the trust list of client certificates.

The layout is the one other OPC UA servers use (`pki/own`, `pki/trusted`, `pki/rejected`), so an
administrator who has managed UaExpert or a PLC's trust list knows what to do: an unknown client
certificate is refused and copied to `rejected/`; moving it to `trusted/` admits that client from
the next connection on, without restarting the daemon.
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

from shuttled.operator_server.identity import current_peer, is_loopback

log = structlog.get_logger("shuttled.operator")

CERT_DAYS = 5 * 365


@dataclass(frozen=True)
class OwnCertificate:
    certificate: Path  # DER
    private_key: Path  # PEM, mode 0600


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _still_valid(path: Path, application_uri: str) -> bool:
    try:
        cert = x509.load_der_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return (
        cert.not_valid_after_utc > datetime.now(UTC)
        and application_uri in san.get_values_for_type(x509.UniformResourceIdentifier)
    )


def ensure_certificate(
    own_dir: Path, application_uri: str, common_name: str, server: bool
) -> OwnCertificate:
    """The application's certificate and key, created self-signed when missing or expired."""
    own_dir.mkdir(parents=True, exist_ok=True)
    paths = OwnCertificate(own_dir / "cert.der", own_dir / "key.pem")
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
    _write_private(paths.private_key, dump_private_key_as_pem(key))
    paths.certificate.write_bytes(cert.public_bytes(Encoding.DER))
    log.info("certificate created", path=str(paths.certificate), uri=application_uri)
    return paths


def thumbprint(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest()  # the OPC UA thumbprint is SHA-1 by definition


def _load_any(path: Path) -> bytes | None:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError:
        return None


class TrustList:
    """asyncua certificate validator: trusted if the exact certificate is in `trusted/` (read at
    every new session, so it is current), or, where configured, if the peer is on loopback."""

    def __init__(self, pki_dir: Path, trust_all_loopback_clients: bool) -> None:
        self.trusted_dir = pki_dir / "trusted"
        self.rejected_dir = pki_dir / "rejected"
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        self.trust_all_loopback_clients = trust_all_loopback_clients

    def _trusted(self) -> set[bytes]:
        found = set()
        for path in self.trusted_dir.iterdir():
            if path.is_file():
                der = _load_any(path)
                if der is not None:
                    found.add(der)
        return found

    async def __call__(self, cert: x509.Certificate, app_description: Any) -> None:
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid)
        der = cert.public_bytes(Encoding.DER)
        if der in self._trusted():
            return
        peer = current_peer()
        if self.trust_all_loopback_clients and is_loopback(peer):
            return
        name = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        label = "".join(c if c.isalnum() or c in "-_." else "_" for c in
                        (str(name[0].value) if name else "client"))
        target = self.rejected_dir / f"{label} [{thumbprint(der)}].der"
        target.write_bytes(der)
        log.warning("client certificate refused: not in the trust list", peer=str(peer),
                    copied_to=str(target))
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
