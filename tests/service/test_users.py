"""Operator accounts: scrypt hashes, no plain passwords, files only their owner can read."""

from __future__ import annotations

from pathlib import Path

from shuttled.records.users import (
    User,
    create_simulation_account,
    hash_password,
    load_users,
    save_users,
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
