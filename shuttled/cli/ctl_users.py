"""`shuttlectl user add|passwd|remove|list|unlock`: manage the operator accounts (SPEC §5, §12).

Offline: it edits the users file directly (`--users-file FILE`, else the daemon configuration's
`[opcua].users_file`, `--config FILE` or $SHUTTLED_CONFIG or /etc/shuttled/shuttled.toml). The
running daemon re-reads the file when it changes, so no restart and no OPC UA method is needed —
and none can be abused remotely to create accounts. Passwords are never taken from the command
line (they would be in the shell history and in `ps`): a prompt asks twice, or `--password-file
F` gives scripts the password as the file's first line.

Account changes decide who may do what to a batch, so they are audited too: when the journal is
known (`--journal FILE`, or the configuration's data directory), a record `UserAdd`,
`UserPasswd` or `UserRemove` is appended to the hash-chained audit trail with the operating-system
account that made the change (role `local`), the account name and role, and `--reason`. It is
not a method call: whoever can write the users file can also skip this, which is why the file is
root-owned 0600 and why the audit record says `local`. Neither the password nor its hash is
recorded anywhere but the users file.

`user unlock NAME` lifts a lockout (five failed password checks within 15 minutes, kept in the
journal): online as a supervisor signed in to the daemon (`--user`), or offline by the
administrator with `--journal FILE` or `--config FILE`. Both are audited.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from pathlib import Path

from shuttled.cli.common import EXIT_OK, fail
from shuttled.cli.ctl_report import JOURNAL_NAME, ConfigUnavailable, daemon_config
from shuttled.records.audit import utc_now
from shuttled.records.users import (
    MIN_PASSWORD_LENGTH,
    ROLES,
    SCRYPT_N,
    User,
    UsersFileError,
    hash_password,
    load_retired,
    load_users,
    needs_upgrade,
    save_users,
)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = MIN_PASSWORD_LENGTH


class UserRefused(Exception):
    """The change is refused (the message says why)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    user = sub.add_parser("user", help="add, change or remove operator accounts (users file)")
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    # No abbreviations: `--password SECRET` must be a usage error, not `--password-file SECRET`.
    add = actions.add_parser("add", help="create an account with a role", allow_abbrev=False)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    add.add_argument("--full-name", required=True, metavar="TEXT",
                     help="the printed name on this user's signatures")
    passwd = actions.add_parser("passwd", help="set a new password for an account",
                                allow_abbrev=False)
    passwd.add_argument("name", metavar="NAME")
    remove = actions.add_parser("remove", help="delete an account")
    remove.add_argument("name", metavar="NAME")
    listing = actions.add_parser("list", help="list the accounts and their roles")
    unlock = actions.add_parser("unlock", help="unlock an account locked after failed password "
                                "checks (online as a supervisor, or offline with --journal or "
                                "--config)")
    unlock.add_argument("name", metavar="NAME")
    unlock.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    unlock.add_argument("--journal", type=Path, metavar="FILE",
                        help="offline: the daemon's journal (the daemon may be stopped)")
    unlock.add_argument("--config", type=Path, metavar="FILE",
                        help="offline: the journal of this configuration's data directory")
    for parser in (add, passwd, remove, listing):
        parser.add_argument("--users-file", type=Path, metavar="FILE",
                            help="the users file (default: [opcua].users_file of the config)")
        parser.add_argument("--config", type=Path, metavar="FILE",
                            help="the daemon's configuration (default $SHUTTLED_CONFIG or "
                            "/etc/shuttled/shuttled.toml)")
        parser.add_argument("--journal", type=Path, metavar="FILE",
                            help="audit the change in this journal (default: the journal in "
                            "the configuration's data directory, if there is one)")
    for parser in (add, passwd, remove):
        parser.add_argument("--reason", default="", help="why (recorded in the audit trail)")
    for parser in (add, passwd):
        parser.add_argument("--password-file", dest="new_password_file", type=Path,
                            metavar="F", help="read the password from the first line of F "
                            "(for scripts); default: ask twice on the terminal")


def is_online(args: argparse.Namespace) -> bool:
    """`user unlock` without a journal or configuration goes to the daemon as `--user`."""
    return args.user_command == "unlock" and args.journal is None and args.config is None


def _unlock_offline(args: argparse.Namespace) -> str:
    journal: Path | None = args.journal
    if journal is None:
        try:
            journal = daemon_config(args.config).data_dir / JOURNAL_NAME
        except ConfigUnavailable as error:
            raise UserRefused(str(error)) from None
    if not journal.is_file():
        raise UserRefused(f"no journal file {journal}")
    from shuttled.records.account_locks import AccountLocks

    locks = AccountLocks(journal)
    try:
        if not locks.unlock(args.name):
            raise UserRefused(f"account {args.name!r} is not locked")
    finally:
        locks.close()
    _audit(journal, "UserUnlock", args.name, "", args.reason)
    return f"unlocked {args.name}"


def _locations(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The users file and the journal to audit in (None: no journal known)."""
    journal: Path | None = args.journal
    if args.users_file is not None and args.config is None:
        return args.users_file, journal
    try:
        config = daemon_config(args.config)
    except ConfigUnavailable as error:
        raise UserRefused(f"{error} (give --users-file FILE or --config FILE)") from None
    users_file = args.users_file or (config.operator.users_file if config.operator else None)
    if users_file is None:
        raise UserRefused("the configuration names no users file ([opcua].users_file): "
                          "give --users-file FILE")
    if journal is None and (config.data_dir / JOURNAL_NAME).is_file():
        journal = config.data_dir / JOURNAL_NAME
    return users_file, journal


def _new_password(args: argparse.Namespace) -> str:
    path: Path | None = args.new_password_file
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise UserRefused(f"cannot read password file {path}: {error}") from None
        password = lines[0] if lines else ""
    else:
        if not sys.stdin.isatty():
            raise UserRefused("no terminal to ask for the password on: give --password-file F")
        password = getpass.getpass(f"New password for {args.name}: ")
        if getpass.getpass("Repeat it: ") != password:
            raise UserRefused("the two passwords differ; nothing changed")
    if not password.strip():
        raise UserRefused("the password is empty")
    if len(password) < MIN_PASSWORD:
        raise UserRefused(f"the password is shorter than {MIN_PASSWORD} characters")
    return password


def _load(path: Path, must_exist: bool) -> dict[str, User]:
    if not path.exists():
        if must_exist:
            raise UserRefused(f"no users file {path}")
        return {}
    try:
        return load_users(path)
    except UsersFileError as error:
        raise UserRefused(str(error)) from None


def _retired(path: Path) -> dict[str, dict[str, str]]:
    try:
        return load_retired(path)
    except UsersFileError as error:
        raise UserRefused(str(error)) from None


def _save(path: Path, users: dict[str, User],
          retired: dict[str, dict[str, str]] | None = None) -> None:
    """Write (atomically, 0600, never through a symlink) and keep the file's owner: root editing
    the file for a daemon running as `shuttled` must not leave it unreadable to the daemon."""
    owner = None
    if path.exists() and not path.is_symlink():
        status = path.stat()
        owner = (status.st_uid, status.st_gid)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_users(path, users, owner=owner, retired=retired)


def _audit(journal: Path | None, method: str, name: str, role: str, reason: str) -> None:
    if journal is None:
        print("note: not audited (no journal known: give --journal FILE or --config FILE)",
              file=sys.stderr)
        return
    from shuttled.records.audit import AuditTrail

    actor = os.environ.get("SUDO_USER") or getpass.getuser()
    trail = AuditTrail(journal)
    try:
        trail.append(user=actor, role="local", unit="", method=method,
                     arguments={"name": name, "role": role}, reason=reason, result="Good",
                     detail="users file edited with shuttlectl user")
    finally:
        trail.close()


def _change(args: argparse.Namespace) -> str:
    users_file, journal = _locations(args)
    name = args.name
    if not NAME.match(name):
        raise UserRefused(f"invalid user name {name!r} (letters, digits, . _ @ -; at most 64)")
    action = args.user_command
    if action == "add" and args.role not in ROLES:
        raise UserRefused(f"unknown role {args.role!r} (roles: {', '.join(ROLES)})")
    if journal is not None and not journal.is_file():
        raise UserRefused(f"no journal file {journal}")
    users = _load(users_file, must_exist=action != "add")
    if action == "add" and name in users:
        raise UserRefused(f"user {name!r} already exists in {users_file} (use passwd)")
    retired = _retired(users_file)
    if action == "add" and name in retired:
        was = retired[name]
        raise UserRefused(
            f"user name {name!r} belonged to {was.get('full_name') or 'an account'} (removed "
            f"{was.get('removed', '?')}); a user name is never given to anyone else (21 CFR "
            "11.100(a)): choose another name")
    if action != "add" and name not in users:
        raise UserRefused(f"no user {name!r} in {users_file}")
    if action == "remove":
        removed = users.pop(name)
        role = removed.role
        retired[name] = {"full_name": removed.full_name, "role": role, "removed": utc_now()}
        _save(users_file, users, retired)
        _audit(journal, "UserRemove", name, role, args.reason)
        return f"removed {name} from {users_file}"
    role = args.role if action == "add" else users[name].role
    full_name = args.full_name.strip() if action == "add" else users[name].full_name
    if action == "add" and not full_name:
        raise UserRefused("--full-name is empty: it is the printed name on every signature")
    users[name] = User(name, role, hash_password(_new_password(args)), full_name)
    _save(users_file, users)
    _audit(journal, "UserAdd" if action == "add" else "UserPasswd", name, role, args.reason)
    return f"{'added' if action == 'add' else 'new password for'} {name} ({role}) in {users_file}"


def run(args: argparse.Namespace) -> int:
    try:
        if args.user_command == "list":
            users_file, _ = _locations(args)
            accounts = _load(users_file, must_exist=True).values()
            for user in accounts:
                print(f"{user.name}\t{user.role}\t{user.full_name}")
            for name, was in _retired(users_file).items():
                print(f"{name}\t(removed {was.get('removed', '?')})\t{was.get('full_name', '')}")
            weak = sorted(u.name for u in accounts if needs_upgrade(u.password_hash))
            if weak:
                print(f"note: {', '.join(weak)}: password hashed at a lower cost than scrypt "
                      f"N={SCRYPT_N}; upgraded at the next sign-in (where the daemon may write "
                      "the users file) or with `shuttlectl user passwd`", file=sys.stderr)
            return EXIT_OK
        print(_unlock_offline(args) if args.user_command == "unlock" else _change(args))
    except UserRefused as refused:
        return fail(str(refused))
    except OSError as error:
        return fail(f"cannot write the users file: {error}")
    except KeyboardInterrupt:
        return fail("interrupted; nothing changed", 130)
    return EXIT_OK
