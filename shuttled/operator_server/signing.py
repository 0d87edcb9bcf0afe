"""Proving a signer at the moment of signing (SPEC §12; Part 11 §11.200(a)(1)).

A signing method's `Signature` argument is JSON `{"meaning", "password", "comment"}`. The signer
is the session's user (the first component, the identification, is already proven by the
sign-in); the password is the second, given again now, checked with the same scrypt as a sign-in,
in a worker thread (the control tick shares the event loop). A wrong password is refused with
BadUserAccessDenied and counted towards the account's lockout; the fifth within 15 minutes locks
the account. The password goes nowhere: not into the audit record (which holds the meaning and
the comment), the journal, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asyncua import ua

from shuttled.engine.protocol_approval import Signer
from shuttled.operator_server.identity import ANONYMOUS, Caller, UsersFileManager
from shuttled.operator_server.methods import Refusal
from shuttled.records.signatures import MAX_COMMENT, MEANINGS
from shuttled.records.users import dummy_hash, verify_password

MAX_PASSWORD = 1024


def parse_signature(text: str, arguments: dict[str, Any]) -> tuple[str, str, str]:
    """(meaning, password, comment); meaning and comment go into the audit `arguments`."""
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Refusal(ua.StatusCodes.BadInvalidArgument,
                      'Signature must be JSON {"meaning": …, "password": …, "comment": …}')
    meaning, password, comment = data.get("meaning"), data.get("password"), data.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise Refusal(ua.StatusCodes.BadInvalidArgument,
                      f"Signature comment must be text of at most {MAX_COMMENT} characters")
    arguments["meaning"] = meaning if isinstance(meaning, str) else repr(meaning)
    arguments["comment"] = comment
    if meaning not in MEANINGS:
        raise Refusal(ua.StatusCodes.BadInvalidArgument,
                      f"Signature meaning must be one of {', '.join(MEANINGS)}")
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD:
        raise Refusal(ua.StatusCodes.BadInvalidArgument,
                      "Signature needs the signer's password (text)")
    return meaning, password, comment


async def prove_signer(users: UsersFileManager, caller: Caller, text: str,
                       arguments: dict[str, Any]) -> Signer:
    meaning, password, comment = parse_signature(text, arguments)
    if caller.role == ANONYMOUS:
        raise Refusal(ua.StatusCodes.BadUserAccessDenied, "an anonymous session cannot sign")
    account = users.account(caller.name)
    if users.locks is not None and users.locks.is_locked(caller.name):
        raise Refusal(ua.StatusCodes.BadUserAccessDenied,
                      f"account {caller.name} is locked: a supervisor must unlock it")
    stored = account.password_hash if account is not None else dummy_hash()
    right = await asyncio.to_thread(verify_password, password, stored)
    if not right or account is None:
        locked = users.count_failure(caller.name, "signature", account is not None)
        raise Refusal(ua.StatusCodes.BadUserAccessDenied,
                      "wrong password: not signed" + ("; the account is now locked" if locked
                                                      else ""))
    return Signer(caller.name, caller.role, account.printed_name, meaning, comment)
