"""Reading a `confirm` step (SPEC §12 "Operator steps"): `{prompt, record, verify}`.

Kept apart from `_phases.py` so the step kinds stay one small reader each. Every problem is a
located error like any other key: the author sees all of them in one `shuttlectl validate`.
Record names become the keys of the `Values` JSON an operator sends with `Confirm` and of the
batch record, so they are identifiers (no spaces, no punctuation to escape) and unique.
"""

from __future__ import annotations

import re

from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.scalarbool import ScalarBoolean

from protocols._schema import Checker, Loc, describe, item_at, value_at
from protocols.model import Confirm

__all__ = ["CONFIRM_KEYS", "MAX_PROMPT", "RECORD_NAME_PATTERN", "read_confirm"]

CONFIRM_KEYS = ("prompt", "record", "verify")
CONFIRM_REQUIRED = ("prompt",)
RECORD_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PROMPT = 200  # shown as the unit's CurrentStepName and on a console line
MAX_RECORD_NAME = 64


def read_confirm(checker: Checker, body: object, loc: Loc) -> Confirm | None:
    """The validated step, or None with every problem recorded in `checker`."""
    confirm = checker.mapping(body, loc, "confirm")
    if confirm is None:
        return None
    before = len(checker.errors)
    checker.check_keys(confirm, CONFIRM_KEYS, CONFIRM_REQUIRED, " in confirm", loc)
    prompt = None
    if "prompt" in confirm and (prompt := checker.text(confirm, "prompt")) is not None:
        prompt = prompt.strip()
        if not prompt:
            checker.error(value_at(confirm, "prompt"),
                          "prompt must not be empty: say what the operator has to do")
        elif len(prompt) > MAX_PROMPT or "\n" in prompt:
            checker.error(value_at(confirm, "prompt"),
                          f"prompt must be one line of at most {MAX_PROMPT} characters")
    record = _record(checker, confirm["record"], value_at(confirm, "record")) \
        if "record" in confirm else ()
    verify = False
    if "verify" in confirm:
        value = confirm["verify"]
        if isinstance(value, bool | ScalarBoolean):
            verify = bool(value)
        else:
            checker.error(value_at(confirm, "verify"),
                          f"verify must be true or false, not {describe(value)}")
    if len(checker.errors) > before or not prompt:
        return None
    return Confirm(prompt=prompt, record=record, verify=verify)


def _record(checker: Checker, value: object, loc: Loc) -> tuple[str, ...]:
    if not isinstance(value, CommentedSeq):
        checker.error(loc, "record must be a list of names such as [lot, bag_id], "
                      f"not {describe(value)}")
        return ()
    names: list[str] = []
    seen: dict[str, Loc] = {}
    for index, name in enumerate(value):
        at = item_at(value, index)
        if not isinstance(name, str):
            checker.error(at, f"a record name must be text such as 'lot', not {describe(name)}")
            continue
        if not RECORD_NAME_PATTERN.fullmatch(name) or len(name) > MAX_RECORD_NAME:
            checker.error(at, f"invalid record name {name!r}: use letters, digits and '_', "
                          f"starting with a letter or '_' (at most {MAX_RECORD_NAME})")
            continue
        if name in seen:
            line, col = seen[name]
            checker.error(at, f"duplicate record name {name!r} (already at {line}:{col})")
            continue
        seen[name] = at
        names.append(str(name))
    return tuple(names)
