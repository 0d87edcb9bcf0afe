"""Operator accounts: scrypt hashes, no plain passwords, files only their owner can read, never
through a symlink."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shuttled.records.users import (
    SCRYPT_N,
    TEST_COST_ENV,
    User,
    UsersFileError,
    create_simulation_account,
    hash_password,
    load_users,
    needs_upgrade,
    save_users,
    scrypt_cost,
    upgrade_hash,
    verify_password,
)


def test_passwords_are_salted_scrypt_hashes_that_verify() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("scrypt$") and first != second  # salted
    assert verify_password("correct horse", first)
    assert not verify_password("correct hors", first)
    assert not verify_password("x", "md5$abc")
    assert not verify_password("x", "scrypt$not$a$valid$hash$at-all")


def test_users_file_round_trips_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    # A space and "!" are outside the base64 alphabet, so the password cannot turn up inside
    # the salt or hash by chance (a two-letter password once did, 1 run in a few hundred).
    password = "open sesame!"
    save_users(path, {"alice": User("alice", "operator", hash_password(password))})
    assert path.stat().st_mode & 0o777 == 0o600
    users = load_users(path)
    assert users["alice"].role == "operator" and password not in path.read_text()


def test_simulation_account_is_a_supervisor_with_a_private_random_password(tmp_path: Path) -> None:
    users_file, credentials = create_simulation_account(tmp_path)
    name, password = credentials.read_text().strip().split(":", 1)
    assert name == "sim" and len(password) >= 20
    assert credentials.stat().st_mode & 0o777 == 0o600
    user = load_users(users_file)["sim"]
    assert user.role == "supervisor" and verify_password(password, user.password_hash)


def test_the_users_file_is_never_read_or_written_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    save_users(real, {"alice": User("alice", "operator", hash_password("open sesame!"))})
    link = tmp_path / "users.toml"
    link.symlink_to(real)
    with pytest.raises(UsersFileError, match="symbolic link"):
        load_users(link)
    before = real.read_bytes()
    with pytest.raises(OSError, match="symbolic link"):
        save_users(link, {})
    assert real.read_bytes() == before and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.toml", "users.toml"]


def test_existing_credential_files_are_made_private(tmp_path: Path) -> None:
    for name in ("users.toml", "sim-credentials"):
        (tmp_path / name).write_text("left by someone else\n")
        os.chmod(tmp_path / name, 0o644)
    users_file, credentials = create_simulation_account(tmp_path)
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert credentials.read_text().startswith("sim:")


def test_a_symlinked_sim_credentials_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "world-readable"
    (tmp_path / "sim-credentials").symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        create_simulation_account(tmp_path)
    assert not target.exists()


@pytest.mark.parametrize(
    "stored",
    ["scrypt$1073741824$8$1$c2FsdA==$ZGlnZXN0",  # 2^30: 1 TiB of memory, refused unchecked
     "scrypt$131072$64$1$c2FsdA==$ZGlnZXN0", "scrypt$131072$8$16$c2FsdA==$ZGlnZXN0",
     "scrypt$100000$8$1$c2FsdA==$ZGlnZXN0", "scrypt$16384$8$1$c2FsdA==$"],
    ids=["huge-n", "huge-r", "huge-p", "n-not-power-of-two", "empty-digest"],
)
def test_hashes_with_unreasonable_parameters_are_refused_without_hashing(stored: str) -> None:
    assert not verify_password("x", stored) and not needs_upgrade(stored)


@pytest.mark.parametrize("value", ["512", "131073", "3000", "2^12", "", str(2**18)])
def test_the_test_knob_accepts_only_lower_powers_of_two(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(TEST_COST_ENV, value)
    assert scrypt_cost() == SCRYPT_N == 2**17


def test_upgrade_keeps_the_mode_and_yields_to_an_administrators_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users.toml"
    old = hash_password("open sesame!")  # 2^10 (tests/conftest.py)
    save_users(path, {"alice": User("alice", "operator", old),
                      "bob": User("bob", "viewer", old)}, mode=0o640)
    monkeypatch.setenv(TEST_COST_ENV, str(2**11))
    assert needs_upgrade(old)
    assert upgrade_hash(path, "alice", old, "open sesame!")
    users = load_users(path)
    assert users["alice"].password_hash.startswith("scrypt$2048$8$1$")
    assert verify_password("open sesame!", users["alice"].password_hash)
    assert users["bob"].password_hash == old and users["bob"].role == "viewer"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # Meanwhile an administrator gave alice a new password: the sign-in's rehash must not undo it
    assert not upgrade_hash(path, "alice", old, "open sesame!")
    os.chmod(path, 0o644)  # kept, but never readable by others
    assert upgrade_hash(path, "bob", old, "open sesame!")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_simulate_refuses_a_symlinked_sim_credentials_file_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sim-credentials").symlink_to(tmp_path / "planted")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "shuttled"), "simulate", "--units", "1",
         "--data-dir", str(data)], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "sim-credentials is a symbolic link" in result.stderr
    assert not (tmp_path / "planted").exists()
