"""The instrument's Ed25519 key: what the instrument signs is recognisably its own (SPEC §12).

One key per instrument, created on the daemon's first start under the data directory: the private
key `instrument-key.pem` (PKCS#8 PEM, mode 0600, never a symlink) and, beside it, the public key
`instrument-key.pub.pem` for anyone who checks a signature offline (`shuttlectl audit verify
--journal`, a receiving site's import of a tech-transfer package). It signs the audit anchors
(audit_anchors.py) and is meant for every other signature the instrument makes as itself.

Every signed message starts with a purpose label (`sign(purpose, data)`), so a signature made for
one kind of record can never be passed off as another kind (an anchor as a package, say).

What the key proves is bounded by who can read it: whoever can read the data directory as the
daemon's account can sign as the instrument. Its value is that copies of signed statements (MQTT,
reports, packages) leave the machine, and a later edit on the machine cannot match them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from shuttled.records.private_files import (
    PrivateFileError,
    enforce_mode,
    read_private,
    replace_private,
)

log = structlog.get_logger("shuttled.records")

KEY_FILE = "instrument-key.pem"
PUBLIC_KEY_FILE = "instrument-key.pub.pem"


class InstrumentKeyError(Exception):
    """The key cannot be used (the message names the file and why)."""


def _message(purpose: str, data: bytes) -> bytes:
    if not purpose or "\n" in purpose:
        raise ValueError("a signature purpose is one non-empty line")
    return b"shuttled " + purpose.encode("utf-8") + b"\n" + data


@dataclass(frozen=True)
class PublicKey:
    """An instrument's public key: checks its signatures; `key_id` names it in one short word."""

    key: Ed25519PublicKey

    @classmethod
    def from_pem(cls, data: bytes, source: str = "public key") -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as error:
            raise InstrumentKeyError(f"{source}: not a PEM public key ({error})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InstrumentKeyError(f"{source}: not an Ed25519 public key")
        return cls(key)

    @classmethod
    def from_raw(cls, data: bytes) -> PublicKey:
        try:
            return cls(Ed25519PublicKey.from_public_bytes(data))
        except ValueError as error:
            raise InstrumentKeyError(f"not a raw Ed25519 public key: {error}") from None

    @classmethod
    def load(cls, path: Path) -> PublicKey:
        try:
            return cls.from_pem(path.read_bytes(), str(path))
        except OSError as error:
            raise InstrumentKeyError(f"cannot read public key {path}: {error.strerror}") from None

    @property
    def raw(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def key_id(self) -> str:
        """The first 16 hex digits of the SHA-256 of the raw key: short enough to read aloud
        over the phone when comparing with the copy a receiving site keeps."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def verify(self, purpose: str, data: bytes, signature: bytes) -> bool:
        try:
            self.key.verify(signature, _message(purpose, data))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class InstrumentKey:
    """The private key, with the file it came from."""

    private: Ed25519PrivateKey
    path: Path

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.private.public_key())

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, purpose: str, data: bytes) -> bytes:
        return self.private.sign(_message(purpose, data))

    def verify(self, purpose: str, data: bytes, signature: bytes) -> bool:
        return self.public.verify(purpose, data, signature)


def load_or_create(data_dir: Path) -> InstrumentKey:
    """The instrument key of this data directory, created on first use. An existing key file
    with another mode is set to 0600 (and logged); a symlink or an unreadable key is refused
    with InstrumentKeyError. The public key file beside it is (re)written when it is missing or
    holds another key."""
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        key = _load(path)
    except FileNotFoundError:
        key = _create(path)
    _write_public_key(data_dir / PUBLIC_KEY_FILE, key.public)
    return key


def load_public_key(data_dir: Path) -> PublicKey:
    """The public key beside a journal, for offline checks (no access to the private key)."""
    return PublicKey.load(data_dir / PUBLIC_KEY_FILE)


def _load(path: Path) -> InstrumentKey:
    try:
        if enforce_mode(path, 0o600):
            log.warning("instrument key was readable by others: set to mode 0600", path=str(path))
        data = read_private(path)
    except FileNotFoundError:
        raise
    except PrivateFileError as error:
        raise InstrumentKeyError(f"instrument key: {error}") from None
    except OSError as error:
        raise InstrumentKeyError(f"cannot read instrument key {path}: {error.strerror}") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise InstrumentKeyError(f"{path} is not a PEM private key ({error})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise InstrumentKeyError(f"{path} is not an Ed25519 private key")
    return InstrumentKey(private, path)


def _create(path: Path) -> InstrumentKey:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        replace_private(path, pem, 0o600, exclusive=True)
    except FileExistsError:
        return _load(path)  # another process made it between our look and our write: use it
    except OSError as error:
        raise InstrumentKeyError(f"cannot create instrument key {path}: {error}") from None
    key = InstrumentKey(private, path)
    log.info("instrument key created", path=str(path), key_id=key.key_id)
    return key


def _write_public_key(path: Path, public: PublicKey) -> None:
    try:
        if path.is_file() and not path.is_symlink() and path.read_bytes() == public.pem:
            return
        replace_private(path, public.pem, 0o644)
    except OSError as error:
        raise InstrumentKeyError(f"cannot write public key {path}: {error}") from None
