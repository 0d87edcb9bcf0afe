"""Tech-transfer packages (`.shuttlepkg`, SPEC §12): a protocol leaves one site with its history
and arrives at another intact, or not at all.

A package is JSON: `content` (the protocol text and identity, its lifecycle history with every
signature, the exporting instrument's digital-twin analysis and the origin), the SHA-256 of the
canonical content, and the exporting instrument's Ed25519 signature over that content (purpose
`protocol-package`, instrument_key.py). The receiving site checks, in this order, and names the
first failure: the format, the hash (an edit anywhere in the content), the key (is the signer a
site this instrument trusts?), the signature, and that the text is the text the identity names.

A trusted key is the receiving site's decision, given as the sending instrument's public key
(`shuttlectl site-key` there; PEM). The package carries the sender's public key too, but only to
name it: trusting a package because of the key inside it would trust anyone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shuttled.records.instrument_key import InstrumentKey, InstrumentKeyError, PublicKey
from shuttled.records.signatures import canonical_sha256

FORMAT = "shuttled-protocol-package/1"
PURPOSE = "protocol-package"
MAX_PACKAGE = 4 * 1024 * 1024


class PackageRefused(Exception):
    """The package is not accepted; the message says which check failed and why."""


@dataclass(frozen=True)
class VerifiedPackage:
    content: dict[str, Any]
    content_sha256: str
    key_id: str

    @property
    def protocol(self) -> dict[str, Any]:
        return self.content["protocol"]


def _canonical(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def build_package(content: dict[str, Any], key: InstrumentKey) -> bytes:
    """The package's bytes; `content` must already hold protocol, lifecycle, signatures,
    analysis and origin (the caller knows them; this module only seals)."""
    data = _canonical(content)
    package = {
        "format": FORMAT,
        "content": content,
        "content_sha256": hashlib.sha256(data).hexdigest(),
        "signature": {
            "algorithm": "Ed25519",
            "key_id": key.key_id,
            "value": base64.b64encode(key.sign(PURPOSE, data)).decode("ascii"),
        },
    }
    return json.dumps(package, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


def parse_trusted_key(text: str | bytes, source: str = "trusted key") -> PublicKey:
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        return PublicKey.from_pem(data, source)
    except InstrumentKeyError as error:
        raise PackageRefused(str(error)) from None


def verify_package(data: bytes, trusted: list[PublicKey]) -> VerifiedPackage:
    if len(data) > MAX_PACKAGE:
        raise PackageRefused(f"package larger than {MAX_PACKAGE} bytes")
    try:
        package = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise PackageRefused(f"not a protocol package (not JSON: {error})") from None
    if not isinstance(package, dict) or package.get("format") != FORMAT:
        raise PackageRefused(f"not a protocol package (format is not {FORMAT!r})")
    content, claimed = package.get("content"), package.get("content_sha256")
    signature = package.get("signature")
    if not isinstance(content, dict) or not isinstance(claimed, str) or not isinstance(
            signature, dict):
        raise PackageRefused("package lacks content, content_sha256 or signature")
    canonical = _canonical(content)
    actual = hashlib.sha256(canonical).hexdigest()
    if actual != claimed:
        raise PackageRefused(f"content does not match its SHA-256 ({actual[:12]}… instead of "
                             f"{claimed[:12]}…): the package was changed after export")
    key_id = str(signature.get("key_id", ""))
    key = next((k for k in trusted if k.key_id == key_id), None)
    if key is None:
        known = ", ".join(k.key_id for k in trusted) or "none"
        raise PackageRefused(f"signed by instrument key {key_id or '(none)'}, which is not "
                             f"trusted here (trusted: {known}); give its public key with --trust")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except ValueError:
        raise PackageRefused("the signature is not base64") from None
    if signature.get("algorithm") != "Ed25519" or not key.verify(PURPOSE, canonical, value):
        raise PackageRefused(f"the Ed25519 signature does not verify with key {key_id}")
    _check_protocol(content)
    return VerifiedPackage(content, actual, key_id)


def _check_protocol(content: dict[str, Any]) -> None:
    protocol = content.get("protocol")
    if not isinstance(protocol, dict) or not isinstance(protocol.get("text"), str):
        raise PackageRefused("package holds no protocol text")
    text, sha = protocol["text"], protocol.get("sha256")
    if canonical_sha256(text) != sha:
        raise PackageRefused("the protocol text does not match the SHA-256 it was signed with")
    identity = str(protocol.get("identity", ""))
    if not identity.endswith(f"#{str(sha)[:12]}"):
        raise PackageRefused(f"identity {identity!r} does not name this text")
