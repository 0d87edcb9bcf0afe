"""`shuttlectl user add|passwd|remove` as an administrator runs it: a subprocess, passwords from
a file (never the command line), the users file 0600, refusals with exit 1 and one line."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shuttled.records.audit import read_journal, verify_journal
from shuttled.records.journal import Journal
from shuttled.records.users import load_users, verify_password

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "shuttled.toml.example"


def ctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "shuttlectl"), "user", *args], capture_output=True,
                          text=True, timeout=60, input=stdin)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    password = tmp_path / "password"
    password.write_text("correct horse battery\n")
    return tmp_path / "users.toml", password


def test_add_passwd_remove(files: tuple[Path, Path], tmp_path: Path) -> None:
    users, password = files
    result = ctl("add", "alice", "--role", "operator", "--users-file", str(users),
                 "--password-file", str(password))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    alice = load_users(users)["alice"]
    assert alice.role == "operator"
    assert verify_password("correct horse battery", alice.password_hash)
    assert "correct horse" not in users.read_text()

    new = tmp_path / "new"
    new.write_text("tr0ub4dor&3 again")
    result = ctl("passwd", "alice", "--users-file", str(users), "--password-file", str(new))
    assert result.returncode == 0, result.stderr
    alice = load_users(users)["alice"]
    assert verify_password("tr0ub4dor&3 again", alice.password_hash)
    assert alice.role == "operator"
    assert stat.S_IMODE(users.stat().st_mode) == 0o600

    result = ctl("remove", "alice", "--users-file", str(users))
    assert result.returncode == 0, result.stderr
    assert load_users(users) == {}


def test_changes_are_audited_in_the_journal(files: tuple[Path, Path], tmp_path: Path) -> None:
    users, password = files
    journal = tmp_path / "journal.sqlite3"
    Journal(journal).close()
    for args in (("add", "qa", "--role", "viewer", "--password-file", str(password)),
                 ("passwd", "qa", "--password-file", str(password)),
                 ("remove", "qa")):
        result = ctl(*args, "--users-file", str(users), "--journal", str(journal),
                     "--reason", "CR-1234")
        assert result.returncode == 0, result.stderr
    records = read_journal(journal)
    assert [r.method for r in records] == ["UserAdd", "UserPasswd", "UserRemove"]
    assert all(r.role == "local" and r.reason == "CR-1234" for r in records)
    assert records[0].arguments == {"name": "qa", "role": "viewer"}
    assert "correct horse" not in journal.read_bytes().decode("latin-1")
    assert verify_journal(journal).ok


REFUSALS = [
    (("add", "bob", "--role", "admin"), "unknown role 'admin'"),
    (("add", "alice", "--role", "viewer"), "already exists"),
    (("passwd", "carol"), "no user 'carol'"),
    (("remove", "carol"), "no user 'carol'"),
    (("add", "bad name", "--role", "viewer"), "invalid user name"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS)
def test_bad_requests_are_refused(files: tuple[Path, Path], args: tuple[str, ...],
                                  message: str) -> None:
    users, password = files
    assert ctl("add", "alice", "--role", "supervisor", "--users-file", str(users),
               "--password-file", str(password)).returncode == 0
    before = users.read_bytes()
    extra = ("--password-file", str(password)) if args[0] in ("add", "passwd") else ()
    result = ctl(*args, "--users-file", str(users), *extra)
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert users.read_bytes() == before


@pytest.mark.parametrize("content", ["", "\n", "   \n", "short\n"])
def test_empty_or_short_passwords_are_refused(files: tuple[Path, Path], tmp_path: Path,
                                              content: str) -> None:
    users, _ = files
    password = tmp_path / "weak"
    password.write_text(content)
    result = ctl("add", "dave", "--role", "viewer", "--users-file", str(users),
                 "--password-file", str(password))
    assert result.returncode == 1 and "password" in result.stderr
    assert "Traceback" not in result.stderr
    assert not users.exists()


def test_no_terminal_and_no_password_file_is_refused(files: tuple[Path, Path]) -> None:
    users, _ = files
    result = ctl("add", "erin", "--role", "viewer", "--users-file", str(users),
                 stdin="a password on stdin\n")
    assert result.returncode == 1 and "--password-file" in result.stderr
    assert not users.exists()


def test_password_is_not_an_option() -> None:
    result = ctl("add", "frank", "--role", "viewer", "--password", "hunter22")
    assert result.returncode == 2  # argparse: usage error, no such option


def test_users_file_from_the_daemon_configuration(files: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    """Without --users-file, the configuration's [opcua].users_file is edited, and the change
    is audited in the journal of its data directory."""
    _, password = files
    config = tmp_path / "shuttled.toml"
    users = tmp_path / "etc-users.toml"
    data = tmp_path / "data"
    Journal(data / "journal.sqlite3").close()
    text = EXAMPLE.read_text()
    text = re.sub(r'(?m)^data_dir = .*$', f'data_dir = "{data}"', text)
    text = re.sub(r'(?m)^users_file = .*$', f'users_file = "{users}"', text)
    config.write_text(text)
    result = ctl("add", "gina", "--role", "operator", "--config", str(config),
                 "--password-file", str(password))
    assert result.returncode == 0, result.stderr
    assert load_users(users)["gina"].role == "operator"
    assert [r.method for r in read_journal(data / "journal.sqlite3")] == ["UserAdd"]


@pytest.mark.parametrize("action", [("add", "zoe", "--role", "viewer"), ("list",)])
def test_a_symlinked_users_file_is_refused(files: tuple[Path, Path], tmp_path: Path,
                                           action: tuple[str, ...]) -> None:
    users, password = files
    assert ctl("add", "alice", "--role", "operator", "--users-file", str(users),
               "--password-file", str(password)).returncode == 0
    real = tmp_path / "real.toml"
    users.rename(real)
    users.symlink_to(real)
    before = real.read_bytes()
    extra = ("--password-file", str(password)) if action[0] == "add" else ()
    result = ctl(*action, "--users-file", str(users), *extra)
    assert result.returncode == 1 and "symbolic link" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert real.read_bytes() == before and users.is_symlink()


def test_list_points_out_hashes_below_the_current_cost(files: tuple[Path, Path]) -> None:
    users, password = files
    assert ctl("add", "alice", "--role", "operator", "--users-file", str(users),
               "--password-file", str(password)).returncode == 0  # 2^10 (tests/conftest.py)
    result = subprocess.run(
        [str(BIN / "shuttlectl"), "user", "list", "--users-file", str(users)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SHUTTLED_TEST_SCRYPT_N": str(2**11)},
    )
    assert result.returncode == 0 and result.stdout == "alice\toperator\n"
    assert "alice: password hashed at a lower cost" in result.stderr
