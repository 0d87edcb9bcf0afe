"""Signed anchors of the audit trail (SPEC §12): the chain head, signed, outside the database.

The hash chain finds a record that was edited, deleted from the middle or inserted, but not a
tail that was cut off, nor a table that was dropped and started afresh: what is left is a valid
chain. So every `INTERVAL` records (and whenever a caller asks, e.g. at an electronic signature or
a clean stop) the daemon writes the head — how many records, the last one's hash, UTC time —
signed with the instrument key (instrument_key.py) as one JSON line to `<data-dir>/audit-anchors`,
appended and fsynced, and hands it to its listeners (MQTT publishes it, so copies leave the
machine). `audit verify` then holds the table against every anchor (audit_verify.py).

Each anchor also carries `previous`, the SHA-256 of the previous anchor's signature, so a line
removed from the middle or the front of the file, or lines put in another order, break the
sequence and are named; only the file's last lines can be removed unnoticed on the machine, and
those are the ones MQTT, reports and batch records have copies of.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

from shuttled.records.audit_chain import GENESIS, canonical
from shuttled.records.instrument_key import InstrumentKey, PublicKey

log = structlog.get_logger("shuttled.records")

ANCHORS_FILE = "audit-anchors"
INTERVAL = 100
PURPOSE = "audit-anchor v1"


@dataclass(frozen=True)
class Anchor:
    count: int
    hash: str
    utc: str
    key: str  # key id of the instrument key that signed it
    previous: str  # SHA-256 of the previous anchor's signature; GENESIS for the first
    signature: str  # base64 Ed25519 signature of `statement()`

    def statement(self) -> bytes:
        content = {"count": self.count, "hash": self.hash, "utc": self.utc, "key": self.key,
                   "previous": self.previous}
        return canonical(content).encode("utf-8")

    def link(self) -> str:
        """What the next anchor's `previous` must be."""
        return hashlib.sha256(base64.b64decode(self.signature)).hexdigest()

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def to_line(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, data: object) -> Anchor:
        """Raises ValueError naming what is wrong."""
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError("not an anchor (expected count, hash, utc, key, previous, signature)")
        count = data["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count is not a positive whole number")
        if not all(isinstance(data[k], str) for k in ("hash", "utc", "key", "previous",
                                                         "signature")):
            raise ValueError("hash, utc, key, previous and signature must be strings")
        try:
            base64.b64decode(data["signature"], validate=True)
        except ValueError:
            raise ValueError("signature is not base64") from None
        return cls(count, data["hash"], data["utc"], data["key"], data["previous"],
                   data["signature"])

    def verifies_with(self, public: PublicKey) -> bool:
        return public.verify(PURPOSE, self.statement(), base64.b64decode(self.signature))


def make_anchor(key: InstrumentKey, count: int, head: str, utc: str, previous: str) -> Anchor:
    unsigned = Anchor(count, head, utc, key.key_id, previous, "")
    signature = key.sign(PURPOSE, unsigned.statement())
    return Anchor(count, head, utc, key.key_id, previous, base64.b64encode(signature).decode())


@dataclass
class AnchorFile:
    """What an anchors file holds: the anchors with their line numbers, and the lines that are
    not anchors. A last line without its newline is a write the power cut short, not an edit."""

    anchors: list[tuple[int, Anchor]] = field(default_factory=list)
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    torn_tail: bool = False


def read_anchor_file(path: Path) -> AnchorFile:
    """Raises OSError (FileNotFoundError included) when the file cannot be read at all."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    result = AnchorFile()
    lines = text.split("\n")
    if lines and lines[-1] != "":
        result.torn_tail = True
    for number, line in enumerate(lines[:-1], start=1):
        try:
            result.anchors.append((number, Anchor.from_json(json.loads(line))))
        except ValueError as error:
            result.unreadable.append((number, str(error)))
    return result


class AnchorLog:
    """The daemon's side: decide when an anchor is due, sign it, append it durably, announce it."""

    def __init__(self, path: Path, key: InstrumentKey, now: Callable[[], str]) -> None:
        self.path = path
        self.key = key
        self._now = now
        self._listeners: list[Callable[[Anchor], None]] = []
        self.last: Anchor | None = self._read_last()

    def _read_last(self) -> Anchor | None:
        """The newest anchor; a torn last line (power cut while writing) is cut off, since it
        was never a signed anchor and the next one must start on a line of its own."""
        try:
            content = read_anchor_file(self.path)
        except FileNotFoundError:
            return None
        except OSError as error:
            log.error("audit anchors unreadable; anchoring starts again", path=str(self.path),
                      error=str(error))
            return None
        if content.torn_tail:
            with open(self.path, "rb+") as handle:
                data = handle.read()
                handle.truncate(data.rfind(b"\n") + 1)
                os.fsync(handle.fileno())
            log.warning("audit anchors: an incomplete last line was cut off", path=str(self.path))
        for number, problem in content.unreadable:
            log.error("audit anchors: a line is not an anchor", path=str(self.path), line=number,
                      problem=problem)
        return content.anchors[-1][1] if content.anchors else None

    def subscribe(self, listener: Callable[[Anchor], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Anchor], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def due(self, count: int) -> bool:
        """True when `count` records pass an INTERVAL boundary that has no anchor yet (also
        when records were appended by another process, e.g. `shuttlectl user`, meanwhile)."""
        last = self.last.count if self.last is not None else 0
        return count // INTERVAL > last // INTERVAL

    def anchored(self, count: int, head: str) -> bool:
        return self.last is not None and (self.last.count, self.last.hash) == (count, head)

    def append(self, count: int, head: str) -> Anchor:
        """Sign and append one anchor (fsynced before this returns), then tell the listeners."""
        previous = self.last.link() if self.last is not None else GENESIS
        anchor = make_anchor(self.key, count, head, self._now(), previous)
        created = not self.path.exists()
        fd = os.open(self.path,
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, anchor.to_line().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self.last = anchor
        log.info("audit trail anchored", count=count, head=head, key_id=anchor.key)
        for listener in list(self._listeners):
            try:
                listener(anchor)
            except Exception:  # a listener (MQTT) must never undo or block the anchor
                log.exception("audit anchor listener failed")
        return anchor
