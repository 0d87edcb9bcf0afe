"""Operator accounts: a TOML users file with scrypt-hashed passwords and one role each.

No default passwords exist: an account is only ever created with a password its owner chose (or,
for simulation, a random one written to a file only its owner can read). scrypt is memory-hard,
so a stolen users file does not give the passwords away cheaply.
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

import tomli_w

ROLES = ("viewer", "operator", "supervisor")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class UsersFileError(Exception):
    pass


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    salt_text, digest_text = (base64.b64encode(b).decode() for b in (salt, digest))
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt_text}${digest_text}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


def load_users(path: Path) -> dict[str, User]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsersFileError(f"{path}: {error}") from None
    users = {}
    for name, entry in data.get("users", {}).items():
        role, password_hash = entry.get("role"), entry.get("password")
        if role not in ROLES or not isinstance(password_hash, str):
            raise UsersFileError(f"{path}: users.{name}: needs a role ({', '.join(ROLES)}) "
                                 "and a password hash")
        users[name] = User(name, role, password_hash)
    return users


def save_users(path: Path, users: dict[str, User]) -> None:
    """Write atomically with mode 0600: a half-written users file would lock everyone out."""
    data = {"users": {u.name: {"role": u.role, "password": u.password_hash}
                      for u in users.values()}}
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(tomli_w.dumps(data))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def create_simulation_account(data_dir: Path) -> tuple[Path, Path]:
    """The `sim` supervisor with a random password (SPEC §1): users file and credentials file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    users_file = data_dir / "users.toml"
    save_users(users_file, {"sim": User("sim", "supervisor", hash_password(password))})
    credentials = data_dir / "sim-credentials"
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"sim:{password}\n")
    return users_file, credentials
