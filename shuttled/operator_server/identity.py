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

import contextvars
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from asyncua import ua
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession

from shuttled.operator_server.sign_in_throttle import SignInThrottle
from shuttled.operator_server.standard_nodes import load_standard_nodes
from shuttled.records.users import UsersFileError, load_users, verify_password

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
_current_peer: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "shuttled_operator_peer", default=None
)


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
        try:
            return await super().call(params)
        finally:
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

    def create_session(
        self, name: str, user: User | None = None, external: bool = False
    ) -> InternalSession:
        user = user or User(role=UserRole.Anonymous)
        if not external:
            return super().create_session(name, user=user, external=external)
        return _OperatorSession(
            self, self.aspace, self.subscription_service, name, user=user, external=external
        )


class UsersFileManager:
    """asyncua user manager over the users file; re-read when the file changes on disk, so
    `shuttlectl user add` takes effect without restarting the daemon."""

    def __init__(self, users_file: Path | None, allow_anonymous_read: bool) -> None:
        self.users_file = users_file
        self.allow_anonymous_read = allow_anonymous_read
        self._mtime: float | None = None
        self._users: dict = {}
        self.throttle = SignInThrottle()
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
        if account is None or not verify_password(secret, account.password_hash):
            log.warning("sign-in refused", user=username, host=host)
            if self.throttle.failed(host):
                log.error("sign-ins from this host locked after repeated failures", host=host)
            return None
        self.throttle.succeeded(host)
        log.info("signed in", user=username, role=account.role)
        return OperatorUser(role=UserRole.User, name=username, shuttle_role=account.role)


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
