"""The production cost of a password hash is scrypt N=2^17, r=8, p=1 (issue 14).

The rest of the suite runs with the test-only knob (tests/conftest.py) at 2^10; these tests take
it away and pay the real price, about half a second and 128 MiB per hash, to prove what an
installed daemon and `shuttlectl user` actually store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shuttled.records.users import (
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    TEST_COST_ENV,
    User,
    hash_password,
    load_users,
    needs_upgrade,
    save_users,
    upgrade_hash,
    verify_password,
)

BIN = Path(sys.executable).parent


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEST_COST_ENV, raising=False)


def test_new_hashes_cost_n_2_17(production: None) -> None:
    assert (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2**17, 8, 1)
    started = time.perf_counter()
    stored = hash_password("correct horse battery")
    elapsed = time.perf_counter() - started
    assert stored.startswith("scrypt$131072$8$1$")
    assert verify_password("correct horse battery", stored)  # 128 MiB: beyond OpenSSL's default
    assert not needs_upgrade(stored)
    print(f"scrypt N=2^17 hash: {elapsed * 1000:.0f} ms")


def test_a_2_14_hash_is_upgraded_to_2_17(
    production: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an instrument installed before issue 14 has, and what its first sign-in makes."""
    monkeypatch.setenv(TEST_COST_ENV, str(2**14))  # the cost of the hashes made before
    old = hash_password("correct horse battery")
    monkeypatch.delenv(TEST_COST_ENV)
    assert old.startswith("scrypt$16384$") and needs_upgrade(old)
    path = tmp_path / "users.toml"
    save_users(path, {"alice": User("alice", "operator", old)})
    assert upgrade_hash(path, "alice", old, "correct horse battery")
    new = load_users(path)["alice"].password_hash
    assert new.startswith("scrypt$131072$8$1$") and verify_password("correct horse battery", new)


def test_shuttlectl_user_add_stores_the_production_cost(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("correct horse battery\n")
    environment = {k: v for k, v in os.environ.items() if k != TEST_COST_ENV}
    result = subprocess.run(
        [str(BIN / "shuttlectl"), "user", "add", "alice", "--role", "operator",
         "--full-name", "Alice A",
         "--users-file", str(tmp_path / "users.toml"), "--password-file", str(password)],
        capture_output=True, text=True, timeout=60, env=environment,
    )
    assert result.returncode == 0, result.stderr
    stored = load_users(tmp_path / "users.toml")["alice"].password_hash
    assert stored.startswith("scrypt$131072$8$1$")
