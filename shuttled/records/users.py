"""Operator accounts: a TOML users file with scrypt-hashed passwords and one role each.

No default passwords exist: an account is only ever created with a password its owner chose (or,
for simulation, a random one written to a file only its owner can read). scrypt is memory-hard,
so a stolen users file does not give the passwords away cheaply: N=2^17, r=8, p=1 (OWASP's
guidance; 128 MiB and about half a second per check on an instrument PC). A stored hash records
its own cost, so hashes made at a lower cost still verify, and the sign-in upgrades them
(`upgrade_hash`). The users file and `sim-credentials` are secret files (private_files.py): never
followed through a symlink, always mode 0600.

Tests would spend minutes at the production cost, so the cost of *new* hashes can be lowered for
them, and only for them, by the environment variable `SHUTTLED_TEST_SCRYPT_N` (a power of two from
2^10 up to the production cost; anything else is ignored). The daemon logs a warning when it is
set; it never raises the cost nor weakens the check of a stored hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from shuttled.records.private_files import (
    PrivateFileError,
    read_private,
    replace_private,
    write_private,
)

# qa reads, reviews, approves and releases; it runs nothing (SPEC §12).
ROLES = ("viewer", "operator", "supervisor", "qa")
# Part 11 §11.300: a password is one of the two components of a signature; 12 is the floor.
MIN_PASSWORD_LENGTH = 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
TEST_COST_ENV = "SHUTTLED_TEST_SCRYPT_N"
MIN_TEST_N = 2**10
# A stored hash may not make a check cost more than this (a users file is input, too).
MAX_N, MAX_R, MAX_P = 2**20, 16, 4


class UsersFileError(Exception):
    pass


def scrypt_cost() -> int:
    """N for new hashes: the production cost, unless the test-only knob lowers it."""
    text = os.environ.get(TEST_COST_ENV)
    if text is None:
        return SCRYPT_N
    try:
        n = int(text)
    except ValueError:
        return SCRYPT_N
    if n < MIN_TEST_N or n > SCRYPT_N or n & (n - 1):
        return SCRYPT_N
    return n


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses more than 32 MiB unless told: N=2^17, r=8 needs 128 MiB (128·r·N·p).
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=129 * r * n * p + 2**20)


def hash_password(password: str) -> str:
    n = scrypt_cost()
    salt = secrets.token_bytes(16)
    digest = _scrypt(password.encode(), salt, n, SCRYPT_R, SCRYPT_P, 64)
    salt_text, digest_text = (base64.b64encode(b).decode() for b in (salt, digest))
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt_text}${digest_text}"


def _parameters(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        values = int(n), int(r), int(p)
        salt_bytes, digest_bytes = base64.b64decode(salt), base64.b64decode(digest)
    except (ValueError, TypeError):
        return None
    n_, r_, p_ = values
    if scheme != "scrypt" or not (2 <= n_ <= MAX_N and 1 <= r_ <= MAX_R and 1 <= p_ <= MAX_P):
        return None
    if n_ & (n_ - 1) or not digest_bytes:
        return None
    return n_, r_, p_, salt_bytes, digest_bytes


def verify_password(password: str, stored: str) -> bool:
    parameters = _parameters(stored)
    if parameters is None:
        return False
    n, r, p, salt, expected = parameters
    try:
        actual = _scrypt(password.encode(), salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def needs_upgrade(stored: str) -> bool:
    """True for a valid hash made at a lower cost than new hashes get."""
    parameters = _parameters(stored)
    return parameters is not None and (parameters[0], parameters[1]) < (scrypt_cost(), SCRYPT_R)


def dummy_hash() -> str:
    """A hash no password matches, at the cost of new hashes: checking a password against it
    costs what checking against a real account costs, so a user name that does not exist is
    answered no faster than a wrong password (SPEC §12)."""
    salt, digest = (base64.b64encode(secrets.token_bytes(k)).decode() for k in (16, 64))
    return f"scrypt${scrypt_cost()}${SCRYPT_R}${SCRYPT_P}${salt}${digest}"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    full_name: str = ""  # the printed name on every signature (SPEC §12)

    @property
    def printed_name(self) -> str:
        return self.full_name or self.name


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_private(path).decode("utf-8"))
    except PrivateFileError as error:
        raise UsersFileError(str(error)) from None
    except OSError as error:
        raise UsersFileError(f"{path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsersFileError(f"{path}: {error}") from None


def load_retired(path: Path) -> dict[str, dict[str, str]]:
    """Names of removed accounts (Part 11 §11.100(a): a user name, which every signature and
    audit record carries, is never given to anyone else): name -> full_name, role, removed
    (UTC). Kept in the users file's `[retired]` table; nobody signs in with them."""
    if not path.exists():
        return {}
    retired = _read(path).get("retired", {})
    if not isinstance(retired, dict) or not all(isinstance(v, dict) for v in retired.values()):
        raise UsersFileError(f"{path}: [retired] must be a table of removed accounts")
    return {name: {k: str(v) for k, v in entry.items()} for name, entry in retired.items()}


def load_users(path: Path) -> dict[str, User]:
    data = _read(path)
    users = {}
    for name, entry in data.get("users", {}).items():
        role, password_hash = entry.get("role"), entry.get("password")
        if role not in ROLES or not isinstance(password_hash, str):
            raise UsersFileError(f"{path}: users.{name}: needs a role ({', '.join(ROLES)}) "
                                 "and a password hash")
        full_name = entry.get("full_name", "")
        if not isinstance(full_name, str):
            raise UsersFileError(f"{path}: users.{name}.full_name must be text")
        users[name] = User(name, role, password_hash, full_name)
    return users


def save_users(
    path: Path, users: dict[str, User], mode: int = 0o600, owner: tuple[int, int] | None = None,
    retired: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write atomically (a half-written users file would lock everyone out), mode 0600 unless
    told otherwise; a symlink in the users file's place is refused. `retired` None keeps the
    file's retired names as they are (a hash upgrade or a new password must not forget them)."""
    if retired is None:
        try:
            retired = load_retired(path) if path.exists() and not path.is_symlink() else {}
        except UsersFileError:  # a file being replaced whole (simulation accounts) keeps nothing
            retired = {}
    data: dict[str, Any] = {"users": {
        u.name: {"role": u.role, "password": u.password_hash,
                 **({"full_name": u.full_name} if u.full_name else {})}
        for u in users.values()}}
    if retired:
        data["retired"] = retired
    replace_private(path, tomli_w.dumps(data).encode("utf-8"), mode, owner)


def upgrade_hash(path: Path, name: str, old_hash: str, password: str) -> bool:
    """Rehash one account's password at the current cost, after a successful sign-in. The file
    is read again just before the write and changed only if the account still has `old_hash`
    (an administrator's edit meanwhile wins); mode and owner are kept, but never readable or
    writable by others. False when there was nothing to upgrade. Raises OSError or
    UsersFileError when the file cannot be rewritten (e.g. a read-only /etc)."""
    users = load_users(path)
    user = users.get(name)
    if user is None or user.password_hash != old_hash:
        return False
    status = path.lstat()
    users[name] = User(name, user.role, hash_password(password), user.full_name)
    save_users(path, users, mode=status.st_mode & 0o660, owner=(status.st_uid, status.st_gid))
    return True


def create_simulation_account(data_dir: Path) -> tuple[Path, Path]:
    """The `sim` supervisor with a random password (SPEC §1): users file and credentials file,
    both 0600 also when they existed before; a symlink in either place is refused (OSError)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    users_file = data_dir / "users.toml"
    # `sim-verifier` verifies the operator steps `sim` confirms when the simulation answers them
    # itself (SPEC §12: a second, different user). Its hash is random (dummy_hash): no password
    # matches it, none exists anywhere, so nobody signs in as it and it costs no scrypt.
    save_users(users_file, {"sim": User("sim", "supervisor", hash_password(password),
                                        "Simulation supervisor"),
                            "sim-verifier": User("sim-verifier", "operator", dummy_hash(),
                                                 "Simulation verifier")})
    credentials = data_dir / "sim-credentials"
    write_private(credentials, f"sim:{password}\n".encode())
    return users_file, credentials
