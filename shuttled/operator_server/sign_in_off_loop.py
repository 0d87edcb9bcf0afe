"""Sign-in without stalling the control tick: the password's scrypt check runs in a thread.

asyncua activates a session synchronously and asks the user manager for the user in the middle
of it, on the event loop that also runs the control loop. At today's scrypt cost (2^17, about half
a second) every sign-in, and every wrong password from an attacker, would hold up the tick for that
long. So before asyncua handles an ActivateSession request, this processor decrypts its user name
token the way asyncua will, has the users file manager check the password in a worker thread
(`UsersFileManager.check_off_the_loop`), and only then lets asyncua go on; the user manager
finds the verdict waiting. The sign-in throttle, the audit of refusals and the answer to the
client are unchanged.
"""

from __future__ import annotations

from typing import Any

import structlog
from asyncua import ua
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary

from shuttled.operator_server.identity import UsersFileManager

log = structlog.get_logger("shuttled.operator")

ACTIVATE_SESSION = ua.NodeId(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary)


class OffLoopSignInProcessor(UaProcessor):
    async def _process_message(self, typeid: Any, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        if typeid == ACTIVATE_SESSION and self.session is not None:
            await self._check_password_first(body)
        return await super()._process_message(typeid, requesthdr, seqhdr, body)

    async def _check_password_first(self, body: Any) -> None:
        users = self.iserver.user_manager
        if not isinstance(users, UsersFileManager):
            return
        try:
            params = struct_from_binary(ua.ActivateSessionParameters, body.copy())
            token = params.UserIdentityToken
            if not isinstance(token, ua.UserNameIdentityToken):
                return
            name, password = self.iserver.decrypt_user_token(self.session, token)
        except Exception:  # asyncua's own handling of the request answers this one
            return
        if name is None:
            return
        secret = password if isinstance(password, str) else (password or b"").decode(
            "utf-8", "replace"
        )
        await users.check_off_the_loop(name, secret, self.name)
