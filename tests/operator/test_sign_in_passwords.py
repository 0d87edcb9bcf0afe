"""Sign-in and the password hashes (issue 14): an unknown name costs what a wrong password costs,
and a hash stored at a lower cost is upgraded by the next successful sign-in over OPC UA."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from asyncua.ua.uaerrors import UaError
from operator_rig import ACCOUNTS, connect, make_daemon
from structlog.testing import capture_logs

from shuttled.operator_server.identity import UsersFileManager
from shuttled.operator_server.sign_in_throttle import SignInThrottle
from shuttled.records.users import TEST_COST_ENV, User, hash_password, load_users, save_users


def test_an_unknown_user_costs_what_a_wrong_password_costs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Measured where asyncua asks (the user manager), interleaved, fastest of seven each: the
    fastest attempt is the one least disturbed by whatever else the machine was doing."""
    monkeypatch.setenv(TEST_COST_ENV, str(2**13))  # ~20 ms: well above the timer's noise
    users_file = tmp_path / "users.toml"
    save_users(users_file, {"alice": User("alice", "operator", hash_password("right one!"))})
    manager = UsersFileManager(users_file, allow_anonymous_read=False)

    def attempt(name: str) -> float:
        manager.throttle = SignInThrottle()  # not a lockout test: every attempt is checked
        started = time.perf_counter()
        assert manager.get_user(None, username=name, password="wrong password") is None
        return time.perf_counter() - started

    wrong, unknown = [], []
    for _ in range(7):
        wrong.append(attempt("alice"))
        unknown.append(attempt("nobody"))
    fastest_wrong, fastest_unknown = min(wrong), min(unknown)
    print(f"wrong password {fastest_wrong * 1000:.1f} ms, unknown user "
          f"{fastest_unknown * 1000:.1f} ms (fastest of 7, N=2^13)")
    assert fastest_unknown > 0.005  # a real scrypt, not a shortcut
    assert abs(fastest_unknown - fastest_wrong) <= 0.25 * max(fastest_unknown, fastest_wrong)


async def test_a_cheaper_hash_is_upgraded_by_the_next_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = await make_daemon(tmp_path)  # accounts hashed at 2^10 (tests/conftest.py)
    users_file = daemon.data_dir / "users.toml"
    before = load_users(users_file)
    monkeypatch.setenv(TEST_COST_ENV, str(2**11))  # new hashes now cost more than the stored
    try:
        with pytest.raises(UaError):
            await connect(daemon.endpoint, "otto", password="not otto's")
        assert load_users(users_file) == before  # a failed sign-in changes nothing
        client = await connect(daemon.endpoint, "otto")
        await client.disconnect()
        # The upgrade is written in a worker thread, off the event loop (its scrypt costs as
        # much as the check): wait for it, not for a time.
        assert daemon.server.server is not None
        await daemon.server.server.iserver.user_manager.upgrades_finished()
        after = load_users(users_file)
        assert after["otto"].password_hash.startswith("scrypt$2048$8$1$")
        assert {n: u for n, u in after.items() if n != "otto"} == {
            n: u for n, u in before.items() if n != "otto"}
        assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
        client = await connect(daemon.endpoint, "otto")  # the new hash signs in
        await client.disconnect()
        assert load_users(users_file)["otto"] == after["otto"]  # and is not made again
    finally:
        await daemon.server.stop()


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """A directory the daemon cannot create files in, as /etc/shuttled under ProtectSystem=strict.
    Root ignores modes, so as root the directory is made immutable instead."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode:
            pytest.skip("cannot make a directory read-only for root here (chattr +i)")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)


async def test_a_users_file_the_daemon_cannot_rewrite_still_signs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = await make_daemon(tmp_path)
    users_file = daemon.data_dir / "users.toml"
    before = users_file.read_bytes()
    monkeypatch.setenv(TEST_COST_ENV, str(2**11))
    assert daemon.server.server is not None
    user_manager = daemon.server.server.iserver.user_manager
    try:
        with read_only(daemon.data_dir), capture_logs() as logs:
            for _ in range(2):
                client = await connect(daemon.endpoint, "sue")
                await client.disconnect()
                # The attempt runs in a worker thread: inside the read-only window, not after it.
                await user_manager.upgrades_finished()
        assert users_file.read_bytes() == before
        warnings = [e for e in logs if e["event"].startswith("password hash not upgraded")]
        assert len(warnings) == 1 and warnings[0]["user"] == "sue"  # once, not at every sign-in
    finally:
        await daemon.server.stop()


async def test_sign_in_refusals_do_not_say_whether_the_account_exists(tmp_path: Path) -> None:
    daemon = await make_daemon(tmp_path)
    try:
        errors = []
        for name in ("otto", "nobody"):
            with pytest.raises(UaError) as refused:
                await connect(daemon.endpoint, name, password="wrong " + ACCOUNTS["otto"][1])
            errors.append(type(refused.value).__name__)
        assert errors[0] == errors[1] == "BadUserAccessDenied"
    finally:
        await daemon.server.stop()
