"""The instrument's Ed25519 key: made once, private (0600, no symlinks), and its public half
beside it for offline checks; signatures are bound to their purpose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shuttled.records.instrument_key import (
    KEY_FILE,
    PUBLIC_KEY_FILE,
    InstrumentKeyError,
    PublicKey,
    load_or_create,
    load_public_key,
)

BIN = Path(sys.executable).parent


def test_made_on_first_use_and_the_same_ever_after(tmp_path: Path) -> None:
    key = load_or_create(tmp_path / "data")
    assert (tmp_path / "data" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / PUBLIC_KEY_FILE).stat().st_mode & 0o777 == 0o644
    again = load_or_create(tmp_path / "data")
    assert again.public.raw == key.public.raw and len(key.key_id) == 16
    assert load_public_key(tmp_path / "data").raw == key.public.raw
    assert PublicKey.from_raw(key.public.raw).key_id == key.key_id
    assert PublicKey.from_pem(key.public.pem).key_id == key.key_id
    assert [p.name for p in (tmp_path / "data").iterdir()] != []  # no temporary files left
    assert all(not p.name.endswith(".tmp") for p in (tmp_path / "data").iterdir())


def test_signatures_are_bound_to_their_purpose(tmp_path: Path) -> None:
    key = load_or_create(tmp_path)
    signature = key.sign("audit-anchor v1", b"record 100")
    assert key.public.verify("audit-anchor v1", b"record 100", signature)
    assert not key.public.verify("package v1", b"record 100", signature)
    assert not key.public.verify("audit-anchor v1", b"record 101", signature)
    with pytest.raises(ValueError):
        key.sign("two\nlines", b"")


def test_an_existing_key_readable_by_others_is_made_private(tmp_path: Path) -> None:
    key = load_or_create(tmp_path)
    path = tmp_path / KEY_FILE
    os.chmod(path, 0o644)
    assert load_or_create(tmp_path).key_id == key.key_id
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_symlinked_key_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.pem"
    load_or_create(tmp_path / "other")
    elsewhere.write_bytes((tmp_path / "other" / KEY_FILE).read_bytes())
    os.chmod(elsewhere, 0o644)
    data = tmp_path / "data"
    data.mkdir()
    (data / KEY_FILE).symlink_to(elsewhere)
    with pytest.raises(InstrumentKeyError, match="symbolic link"):
        load_or_create(data)
    assert elsewhere.stat().st_mode & 0o777 == 0o644  # not chmod-ed through the link
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / KEY_FILE).symlink_to(tmp_path / "nowhere.pem")  # not created through it either
    with pytest.raises(InstrumentKeyError, match="symbolic link"):
        load_or_create(dangling)
    assert not (tmp_path / "nowhere.pem").exists()


def test_a_file_that_is_not_an_ed25519_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("not a key\n")
    with pytest.raises(InstrumentKeyError, match="not a PEM private key"):
        load_or_create(tmp_path)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / KEY_FILE).write_bytes(rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(InstrumentKeyError, match="not an Ed25519 private key"):
        load_or_create(tmp_path)


def test_a_public_key_file_that_does_not_match_is_written_again(tmp_path: Path) -> None:
    key = load_or_create(tmp_path)
    load_or_create(tmp_path / "other")
    (tmp_path / PUBLIC_KEY_FILE).write_bytes((tmp_path / "other" / PUBLIC_KEY_FILE).read_bytes())
    load_or_create(tmp_path)
    assert load_public_key(tmp_path).key_id == key.key_id


def test_simulate_refuses_a_symlinked_key_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / KEY_FILE).symlink_to(tmp_path / "planted.pem")
    result = subprocess.run(
        [str(BIN / "shuttled"), "simulate", "--units", "1", "--data-dir", str(data),
         "--protocol", "protocols/library/demo.yaml", "--speed", "max"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 1
    assert "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "planted.pem").exists()
