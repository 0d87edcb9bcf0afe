"""Certificates of the operator server: its own, made on first start, and the trust list of
client certificates, which may also admit every client on loopback (simulations only).

What is generic (certificates, trust lists; `pki/own`, `pki/trusted`, `pki/rejected`) lives in
`drivers/opcua_pki.py`, shared with the device link and the simulated controller; this module
adds what only the operator server knows: who the peer is, and its log line.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from drivers.opcua_pki import (
    CERT_DAYS,
    OwnCertificate,
    ensure_certificate,
    thumbprint,
)
from drivers.opcua_pki import TrustList as _TrustList
from shuttled.operator_server.identity import current_peer, is_loopback

__all__ = ["CERT_DAYS", "OwnCertificate", "TrustList", "ensure_certificate", "thumbprint"]

log = structlog.get_logger("shuttled.operator")


class TrustList(_TrustList):
    """asyncua certificate validator: trusted if the exact certificate is in `trusted/` (read at
    every new session, so it is current), or, where configured, if the peer is on loopback."""

    def __init__(self, pki_dir: Path, trust_all_loopback_clients: bool) -> None:
        super().__init__(pki_dir)
        self.trust_all_loopback_clients = trust_all_loopback_clients

    def admit_untrusted(self) -> bool:
        return self.trust_all_loopback_clients and is_loopback(current_peer())

    def refused(self, copied_to: Path) -> None:
        log.warning("client certificate refused: not in the trust list",
                    peer=str(current_peer()), copied_to=str(copied_to))
