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
from shuttled.records.users import load_retired, load_users, upgrade_hash, verify_password

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "shuttled.toml.example"


def ctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "shuttlectl"), "user", *args], capture_output=True,
                          text=True, timeout=60, input=stdin)

FULL = ("--full-name", "Test User")  # every account has a printed name (SPEC §12)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    password = tmp_path / "password"
    password.write_text("correct horse battery\n")
    return tmp_path / "users.toml", password


def test_add_passwd_remove(files: tuple[Path, Path], tmp_path: Path) -> None:
    users, password = files
    result = ctl("add", "alice", "--role", "operator", *FULL, "--users-file", str(users),
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
    for args in (("add", "qa", "--role", "viewer", *FULL, "--password-file", str(password)),
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
    (("add", "bob", "--role", "admin", *FULL), "unknown role 'admin'"),
    (("add", "alice", "--role", "viewer", *FULL), "already exists"),
    (("passwd", "carol"), "no user 'carol'"),
    (("remove", "carol"), "no user 'carol'"),
    (("add", "bad name", "--role", "viewer", *FULL), "invalid user name"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS)
def test_bad_requests_are_refused(files: tuple[Path, Path], args: tuple[str, ...],
                                  message: str) -> None:
    users, password = files
    assert ctl("add", "alice", "--role", "supervisor", *FULL, "--users-file", str(users),
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
    result = ctl("add", "dave", "--role", "viewer", *FULL, "--users-file", str(users),
                 "--password-file", str(password))
    assert result.returncode == 1 and "password" in result.stderr
    assert "Traceback" not in result.stderr
    assert not users.exists()


def test_no_terminal_and_no_password_file_is_refused(files: tuple[Path, Path]) -> None:
    users, _ = files
    result = ctl("add", "erin", "--role", "viewer", *FULL, "--users-file", str(users),
                 stdin="a password on stdin\n")
    assert result.returncode == 1 and "--password-file" in result.stderr
    assert not users.exists()


def test_password_is_not_an_option() -> None:
    result = ctl("add", "frank", "--role", "viewer", *FULL, "--password", "hunter22")
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
    result = ctl("add", "gina", "--role", "operator", *FULL, "--config", str(config),
                 "--password-file", str(password))
    assert result.returncode == 0, result.stderr
    assert load_users(users)["gina"].role == "operator"
    assert [r.method for r in read_journal(data / "journal.sqlite3")] == ["UserAdd"]


@pytest.mark.parametrize("action", [("add", "zoe", "--role", "viewer", *FULL), ("list",)])
def test_a_symlinked_users_file_is_refused(files: tuple[Path, Path], tmp_path: Path,
                                           action: tuple[str, ...]) -> None:
    users, password = files
    assert ctl("add", "alice", "--role", "operator", *FULL, "--users-file", str(users),
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
    assert ctl("add", "alice", "--role", "operator", *FULL, "--users-file", str(users),
               "--password-file", str(password)).returncode == 0  # 2^10 (tests/conftest.py)
    result = subprocess.run(
        [str(BIN / "shuttlectl"), "user", "list", "--users-file", str(users)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SHUTTLED_TEST_SCRYPT_N": str(2**11)},
    )
    assert result.returncode == 0 and result.stdout == "alice\toperator\tTest User\n"
    assert "alice: password hashed at a lower cost" in result.stderr


def test_a_locked_account_is_unlocked_offline_by_the_administrator_and_audited(
        tmp_path: Path) -> None:
    from shuttled.records.account_locks import MAX_FAILURES, AccountLocks
    from shuttled.records.audit import AuditTrail

    journal = tmp_path / "journal.sqlite3"
    locks = AccountLocks(journal)
    assert not any(locks.failed("otto", "sign-in", True) for _ in range(MAX_FAILURES - 1))
    assert locks.failed("otto", "signature", True) and locks.is_locked("otto")
    assert not locks.failed("nobody", "sign-in", False)  # no account: counted, locks nothing
    locks.close()
    result = ctl("unlock", "otto", "--reason", "identity checked at the desk", "--journal",
                 str(journal))
    assert result.returncode == 0, result.stderr
    assert not AccountLocks(journal).is_locked("otto")
    again = ctl("unlock", "otto", "--reason", "twice", "--journal", str(journal))
    assert again.returncode == 1 and "is not locked" in again.stderr
    (record,) = [r for r in AuditTrail(journal).records() if r.method == "UserUnlock"]
    assert record.role == "local" and record.arguments["name"] == "otto"


def test_new_passwords_are_at_least_twelve_characters_and_a_full_name_is_required(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    users, _ = files
    eleven = tmp_path / "eleven"
    eleven.write_text("abcdefghijk\n")
    short = ctl("add", "ann", "--role", "qa", "--full-name", "Ann QA", "--users-file",
                str(users), "--password-file", str(eleven))
    assert short.returncode == 1 and "shorter than 12" in short.stderr
    twelve = tmp_path / "twelve"
    twelve.write_text("abcdefghijkl\n")
    blank = ctl("add", "ann", "--role", "qa", "--full-name", " ", "--users-file", str(users),
                "--password-file", str(twelve))
    assert blank.returncode == 1 and "printed name" in blank.stderr
    added = ctl("add", "ann", "--role", "qa", "--full-name", "Ann QA", "--users-file",
                str(users), "--password-file", str(twelve))
    assert added.returncode == 0, added.stderr
    assert load_users(users)["ann"].full_name == "Ann QA"


def test_a_removed_users_name_is_never_given_to_anyone_else(files: tuple[Path, Path]) -> None:
    """21 CFR 11.100(a): signatures and audit records carry the user name, so a removed
    account's name stays retired: re-adding it is refused, and keeping it survives every later
    rewrite of the file (another account's new password, the daemon's hash upgrade)."""
    users, password = files
    for name, full in (("alice", "Alice Archer"), ("bob", "Bob Baker")):
        added = ctl("add", name, "--role", "operator", "--full-name", full, "--users-file",
                    str(users), "--password-file", str(password))
        assert added.returncode == 0, added.stderr
    assert ctl("remove", "alice", "--users-file", str(users)).returncode == 0
    again = ctl("add", "alice", "--role", "qa", "--full-name", "Alice Another", "--users-file",
                str(users), "--password-file", str(password))
    assert again.returncode == 1
    assert re.search(r"user name 'alice' belonged to Alice Archer \(removed 20\d\d-.*Z\); a user "
                     r"name is never given to anyone else", again.stderr)
    assert set(load_users(users)) == {"bob"}  # nobody signs in as a retired name

    assert ctl("passwd", "bob", "--users-file", str(users), "--password-file",
               str(password)).returncode == 0
    bob = load_users(users)["bob"]
    assert upgrade_hash(users, "bob", bob.password_hash, "correct horse battery")
    assert load_retired(users)["alice"]["full_name"] == "Alice Archer"
    listed = ctl("list", "--users-file", str(users))
    assert re.search(r"^alice\t\(removed 20\d\d-\S+Z\)\tAlice Archer$", listed.stdout, re.M)
