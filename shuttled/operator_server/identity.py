"""Who is calling: users from the users file, roles, and the caller of each method call.

asyncua's defaults are the wrong ones for a GMP plant: its PermissiveUserManager lets anyone in
and makes any user called "admin" an administrator (who may add and delete nodes). Here the
users file is the only source of identities, no session ever gets asyncua's Admin role, and the
permission ruleset refuses every service that changes the address space, whoever asks.

asyncua hands a method callback only the object id and the arguments, not the session. The
session's `call` is awaited in the same task as the callback, so a session subclass puts its
user into a context variable for the duration of the call; the method handlers read it there.
The peer address travels the same way into certificate validation (trust of loopback clients).
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from asyncua import ua
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession

from shuttled.operator_server.limits import refuse_session_beyond_limit
from shuttled.operator_server.sign_in_throttle import SignInThrottle
from shuttled.operator_server.standard_nodes import load_standard_nodes
from shuttled.records.account_locks import AccountLocks
from shuttled.records.users import (
    SCRYPT_N,
    TEST_COST_ENV,
    UsersFileError,
    dummy_hash,
    load_users,
    needs_upgrade,
    scrypt_cost,
    upgrade_hash,
    verify_password,
)
from shuttled.records.users import (
    User as Account,
)

log = structlog.get_logger("shuttled.operator")

ANONYMOUS = "anonymous"

# Which role may call which method (SPEC §5); viewers and anonymous sessions only read.
METHOD_ROLES: dict[str, frozenset[str]] = {
    "LoadProtocol": frozenset({"operator", "supervisor"}),
    "Start": frozenset({"operator", "supervisor"}),
    "Hold": frozenset({"operator", "supervisor"}),
    "Restart": frozenset({"operator", "supervisor"}),
    "Stop": frozenset({"operator", "supervisor"}),
    "Abort": frozenset({"supervisor"}),
    "Reset": frozenset({"supervisor"}),
    # Operator steps (SPEC §12; step_methods.py): the people at the instrument; Verify also
    # refuses the user who confirmed.
    "Confirm": frozenset({"operator", "supervisor"}),
    "Verify": frozenset({"operator", "supervisor"}),
    # The protocol library (SPEC §12; protocol_methods.py): everyone signed in reads; authors
    # (operator, supervisor, qa) submit; qa approves and retires; bringing a master recipe in from
    # another site is change control (supervisor, qa).
    "ListProtocols": frozenset({"viewer", "operator", "supervisor", "qa"}),
    "ShowProtocol": frozenset({"viewer", "operator", "supervisor", "qa"}),
    "SubmitProtocol": frozenset({"operator", "supervisor", "qa"}),
    "ApproveProtocol": frozenset({"qa"}),
    "RetireProtocol": frozenset({"qa"}),
    "ExportProtocol": frozenset({"operator", "supervisor", "qa"}),
    "ImportProtocol": frozenset({"supervisor", "qa"}),
    "UnlockUser": frozenset({"supervisor"}),
    "WhoAmI": frozenset({"viewer", "operator", "supervisor", "qa"}),
    # Batch records (SPEC §12): everyone signed in reads; supervisor or qa reviews; qa releases.
    "ReadRecord": frozenset({"viewer", "operator", "supervisor", "qa"}),
    "ReviewRecord": frozenset({"supervisor", "qa"}),
    "ReleaseRecord": frozenset({"qa"}),
}


@dataclass
class OperatorUser(User):
    """asyncua's User (role User or Anonymous, never Admin) plus our role."""

    shuttle_role: str = ANONYMOUS


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    peer: str


_current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "shuttled_operator_caller", default=None
)
# (name, password, stored hash, verdict) of the sign-in being activated in this task.
_prechecked: contextvars.ContextVar[tuple[str, str, str, bool] | None] = contextvars.ContextVar(
    "shuttled_prechecked_sign_in", default=None
)
_current_peer: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "shuttled_operator_peer", default=None
)


# The OPC UA session id of the method call being executed (ConditionRefresh may only refresh
# the caller's own subscriptions, OPC UA Part 9 §5.5.7).
_current_session: contextvars.ContextVar[ua.NodeId | None] = contextvars.ContextVar(
    "shuttled_operator_session", default=None
)


def current_session_id() -> ua.NodeId | None:
    return _current_session.get()


def current_caller() -> Caller:
    """The caller of the method being executed; anonymous if the call came some other way."""
    return _current_caller.get() or Caller(ANONYMOUS, ANONYMOUS, "")


def current_peer() -> Any:
    return _current_peer.get()


def is_loopback(peer: Any) -> bool:
    """`peer` is asyncio's peername: (host, port[, flow, scope]) for TCP."""
    try:
        return ipaddress.ip_address(str(peer[0]).split("%")[0]).is_loopback
    except (TypeError, ValueError, IndexError):
        return False


def _peer_text(peer: Any) -> str:
    try:
        return f"{peer[0]}:{peer[1]}"
    except (TypeError, IndexError):
        return str(peer)


def _peer_host(peer: Any) -> str:
    try:
        return str(peer[0])
    except (TypeError, IndexError):
        return str(peer)


class _OperatorSession(InternalSession):
    async def create_session(self, params: Any, sockname: Any = None) -> Any:
        token = _current_peer.set(self.name)
        try:
            return await super().create_session(params, sockname=sockname)
        finally:
            _current_peer.reset(token)

    def activate_session(self, params: Any, peer_certificate: bytes | None) -> Any:
        """The sign-in: the user manager needs to know which host is trying (throttling)."""
        token = _current_peer.set(self.name)
        try:
            return super().activate_session(params, peer_certificate)
        finally:
            _current_peer.reset(token)

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        user = self.user
        role = getattr(user, "shuttle_role", ANONYMOUS)
        name = user.name if isinstance(user, OperatorUser) and user.name else ANONYMOUS
        token = _current_caller.set(Caller(name, role, _peer_text(self.name)))
        session = _current_session.set(self.session_id)
        try:
            return await super().call(params)
        finally:
            _current_session.reset(session)
            _current_caller.reset(token)


class OperatorInternalServer(InternalServer):
    """Creates our session class for every client session (the internal admin one stays), and
    takes the standard address space from our cache rather than asyncua's shelf."""

    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        """`shelf_file` (from `Server.init`) is the path of our cache (standard_nodes.py)."""
        if shelf_file is None:
            await super().load_standard_address_space(None)
            return
        await load_standard_nodes(self, shelf_file)

    max_sessions = 32  # set from the configuration by limits.apply_limits

    def create_session(
        self, name: str, user: User | None = None, external: bool = False
    ) -> InternalSession:
        user = user or User(role=UserRole.Anonymous)
        if not external:
            return super().create_session(name, user=user, external=external)
        refuse_session_beyond_limit(len(self._external_sessions), self.max_sessions)
        return _OperatorSession(
            self, self.aspace, self.subscription_service, name, user=user, external=external
        )


class UsersFileManager:
    """asyncua user manager over the users file; re-read when the file changes on disk, so
    `shuttlectl user add` takes effect without restarting the daemon."""

    def __init__(
        self, users_file: Path | None, allow_anonymous_read: bool,
        locks: AccountLocks | None = None, on_locked: Callable[[str, str], None] | None = None,
    ) -> None:
        """`locks`: the durable lockout (SPEC §12); `on_locked(name, how)` audits a lock."""
        self.users_file = users_file
        self.allow_anonymous_read = allow_anonymous_read
        self.locks = locks
        self.on_locked = on_locked
        self._mtime: float | None = None
        self._users: dict = {}
        self._not_upgraded: set[str] = set()
        self._upgrades: set[asyncio.Future[None]] = set()  # hash upgrades being written
        self.throttle = SignInThrottle()
        if scrypt_cost() != SCRYPT_N:
            log.warning("password hashing cost lowered by the test-only knob",
                        variable=TEST_COST_ENV, n=scrypt_cost())
        self._reload()

    def _reload(self) -> None:
        if self.users_file is None:
            return
        try:
            mtime = self.users_file.stat().st_mtime
        except OSError as error:
            log.error("users file unreadable: nobody can sign in", error=str(error))
            self._users, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        try:
            self._users = load_users(self.users_file)
        except UsersFileError as error:
            log.error("users file invalid: nobody can sign in", error=str(error))
            self._users = {}
        self._mtime = mtime

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        """None refuses the session (asyncua answers BadUserAccessDenied)."""
        if username is None:
            if self.allow_anonymous_read:
                return OperatorUser(role=UserRole.Anonymous, name=None, shuttle_role=ANONYMOUS)
            log.warning("anonymous session refused")
            return None
        host = _peer_host(current_peer())
        if self.throttle.locked(host):
            log.warning("sign-in refused: too many failures from this host", user=username,
                        host=host)
            return None
        self._reload()
        account = self._users.get(username)
        secret = password if isinstance(password, str) else (password or b"").decode(
            "utf-8", "replace"
        )
        # An unknown name is checked against a dummy hash of the same cost: the answer must not
        # come sooner than for a wrong password, or it tells which accounts exist (SPEC §12).
        stored = account.password_hash if account is not None else dummy_hash()
        if not self._password_matches(username, secret, stored) or account is None:
            log.warning("sign-in refused", user=username, host=host)
            if self.throttle.failed(host):
                log.error("sign-ins from this host locked after repeated failures", host=host)
            self.count_failure(username, "sign-in", account is not None)
            return None
        if self.locks is not None and self.locks.is_locked(username):
            log.warning("sign-in refused: account locked", user=username, host=host)
            return None
        self.throttle.succeeded(host)
        log.info("signed in", user=username, role=account.role)
        if needs_upgrade(account.password_hash) and account.name not in self._not_upgraded:
            # A hash at today's cost takes as long as the check: never on the event loop.
            upgrade = asyncio.get_running_loop().run_in_executor(
                None, self._upgrade, account.name, account.password_hash, secret
            )
            self._upgrades.add(upgrade)
            upgrade.add_done_callback(self._upgrades.discard)
        return OperatorUser(role=UserRole.User, name=username, shuttle_role=account.role)

    def account(self, name: str) -> Account | None:
        self._reload()
        return self._users.get(name)

    def count_failure(self, name: str, how: str, account_exists: bool) -> bool:
        """One failed password check; True (and audited) when it locked the account."""
        if self.locks is None or not self.locks.failed(name, how, account_exists):
            return False
        log.error("account locked after repeated failed password checks", user=name, how=how)
        if self.on_locked is not None:
            self.on_locked(name, how)
        return True

    async def upgrades_finished(self) -> None:
        """Until every hash upgrade started by a sign-in is written (tests, a clean stop)."""
        while self._upgrades:
            await asyncio.gather(*list(self._upgrades), return_exceptions=True)

    async def check_off_the_loop(self, username: str, password: str, peer: Any) -> None:
        """Run the scrypt check of a sign-in in a worker thread, before asyncua asks `get_user`
        synchronously on the event loop (where half a second of scrypt would hold up the
        control tick): `get_user` then takes the verdict from `_prechecked`. A host locked out by
        the throttle costs nothing: `get_user` refuses it without a check."""
        if self.throttle.locked(_peer_host(peer)):
            return
        self._reload()
        account = self._users.get(username)
        stored = account.password_hash if account is not None else dummy_hash()
        matches = await asyncio.to_thread(verify_password, password, stored)
        _prechecked.set((username, password, stored, matches))

    def _password_matches(self, username: str, secret: str, stored: str) -> bool:
        """The verdict `check_off_the_loop` reached for exactly this name and password (an
        unknown name's dummy hash is new each time, so only the name must match then); computed
        here only when no pre-check ran."""
        pre = _prechecked.get()
        _prechecked.set(None)
        same_sign_in = (
            pre is not None and pre[0] == username and hmac.compare_digest(pre[1], secret)
        )
        if same_sign_in and (pre[2] == stored or self._users.get(username) is None):
            return pre[3]
        return verify_password(secret, stored)

    def _upgrade(self, name: str, old_hash: str, password: str) -> None:
        """Rehash a password stored at a lower cost, now that it is known to be right. Once per
        account and daemon: where the users file is read-only to the daemon (a systemd install
        with ProtectSystem=strict), the administrator upgrades with `shuttlectl user passwd`."""
        if self.users_file is None or name in self._not_upgraded:
            return
        try:
            upgraded = upgrade_hash(self.users_file, name, old_hash, password)
        except (OSError, UsersFileError) as error:
            self._not_upgraded.add(name)
            log.warning("password hash not upgraded: the users file cannot be rewritten",
                        user=name, error=str(error))
            return
        if upgraded:
            log.info("password hash upgraded to the current scrypt cost", user=name)


# Services that change the address space: nobody, over the network. (Writes get a per-item
# BadUserAccessDenied from asyncua: no session is ever Admin and our variables are CurrentRead.)
_REFUSED = {
    ua.NodeId(i)
    for i in (
        ua.ObjectIds.AddNodesRequest_Encoding_DefaultBinary,
        ua.ObjectIds.DeleteNodesRequest_Encoding_DefaultBinary,
        ua.ObjectIds.AddReferencesRequest_Encoding_DefaultBinary,
        ua.ObjectIds.DeleteReferencesRequest_Encoding_DefaultBinary,
        ua.ObjectIds.RegisterServerRequest_Encoding_DefaultBinary,
        ua.ObjectIds.RegisterServer2Request_Encoding_DefaultBinary,
        ua.ObjectIds.HistoryUpdateRequest_Encoding_DefaultBinary,
    )
}


class OperatorPermissions(PermissionRuleset):
    """Read, browse, subscribe and call for signed-in sessions; the methods themselves check the
    role (so a refusal is a per-method BadUserAccessDenied and lands in the audit trail)."""

    def check_validity(self, user: Any, action_type_id: ua.NodeId, body: Any) -> bool:
        if action_type_id in _REFUSED:
            return False
        return isinstance(user, OperatorUser)
