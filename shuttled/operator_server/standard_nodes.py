"""asyncua's standard address space from a cache file, so the operator server starts in
milliseconds instead of the 1.2 s asyncua needs to build namespace 0 from its generated code.

The cache is made on the first start (in a worker thread, as asyncua builds it) and used by every
start after it. It holds each standard node pickled on its own, already read-only (read_only.py),
and is decoded node by node as nodes are used (lazy_nodes.py). asyncua's own `shelf_file` has the
same idea with `shelve`, but where Python is built without gdbm/ndbm (pyenv builds often are) it
falls back to `dbm.dumb`, slower than building, and its table lists only the nodes decoded so
far, which would hide the others from our read-only pass.

The cache can never stop the daemon: a missing, unreadable, truncated or corrupt file (checked
with a SHA-256 over the payload), or one made by another asyncua, Python or cache format, is
rebuilt; a directory we cannot write only costs the next start its speed. The file is written to
a temporary name and renamed, so a crash mid-write leaves the old file or none, never half of one.
It is unpickled, so it lives where only the service user can write (systemd's CacheDirectory=, or
the data directory): whoever can replace it could as well replace the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncua
import structlog

from shuttled.operator_server.lazy_nodes import EncodedKey, LazyNodes, encode_nodes
from shuttled.operator_server.read_only import make_node_read_only

if TYPE_CHECKING:
    from asyncua.server.internal_server import InternalServer

log = structlog.get_logger("shuttled.operator")

MAGIC = b"shuttled standard nodes\n"
# Bump when what is cached changes (the read-only transform, the encoding): old files rebuild.
CACHE_FORMAT = 1
FILE_NAME = "opcua-standard-nodes.cache"
STALE_TEMPORARY_S = 600.0  # far longer than any write takes

Encoded = dict[EncodedKey, bytes]


def cache_file(data_dir: Path) -> Path:
    """systemd's CacheDirectory= when the unit has one ($CACHE_DIRECTORY), else <data_dir>/cache.

    A cache directory is what an administrator may wipe to reclaim space without losing state.
    """
    directory = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    return (Path(directory) if directory else data_dir / "cache") / FILE_NAME


def user_cache_file() -> Path:
    """For `shuttled simulate`, whose data directory is often a throwaway: the user's cache
    ($XDG_CACHE_HOME, else ~/.cache), shared by every simulation of this user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shuttled" / FILE_NAME


def cache_identity() -> dict[str, object]:
    """What the pickled nodes depend on: any difference makes the file useless, not dangerous."""
    return {
        "format": CACHE_FORMAT,
        "asyncua": asyncua.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "pickle": pickle.HIGHEST_PROTOCOL,
    }


class CacheInvalid(Exception):
    """The cache file cannot be used (the message says why); it will be rebuilt."""


def read_cache(path: Path) -> Encoded:
    """The encoded standard nodes of a valid cache file; CacheInvalid says why it is not one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CacheInvalid("no cache yet") from None
    except OSError as error:
        raise CacheInvalid(f"cannot read: {error}") from None
    if not data.startswith(MAGIC):
        raise CacheInvalid("not a cache file")
    header_end = data.find(b"\n", len(MAGIC))
    if header_end < 0:
        raise CacheInvalid("header unreadable")
    try:
        header = json.loads(data[len(MAGIC) : header_end])
        identity, digest, size = header["identity"], header["sha256"], header["size"]
    except (ValueError, KeyError, TypeError):
        raise CacheInvalid("header unreadable") from None
    if identity != cache_identity():
        raise CacheInvalid(f"made for {identity}, not {cache_identity()}")
    payload = memoryview(data)[header_end + 1 :]
    if len(payload) != size or hashlib.sha256(payload).hexdigest() != digest:
        raise CacheInvalid("corrupt (size or checksum differs)")
    try:
        encoded = pickle.loads(payload)
    except Exception as error:  # a valid checksum over a bad pickle: made by a broken writer
        raise CacheInvalid(f"undecodable: {error}") from None
    if not isinstance(encoded, dict) or not encoded:
        raise CacheInvalid("empty")
    return encoded


def write_cache(path: Path, encoded: Encoded) -> None:
    """Atomically (temporary file, then rename); OSError to the caller."""
    payload = pickle.dumps(encoded, pickle.HIGHEST_PROTOCOL)
    header = {
        "identity": cache_identity(),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(MAGIC + json.dumps(header).encode() + b"\n")
            file.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of writers killed mid-write (18 MB each); not those of a writer at work."""
    for stale in path.parent.glob(f".{path.name}.*"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_TEMPORARY_S:
                stale.unlink()


def build_standard_nodes(iserver: InternalServer) -> None:
    """asyncua's standard nodes, built into the server's (still empty) table and made read-only.
    Blocking: run it in a worker thread."""
    from asyncua.server.standard_address_space import standard_address_space

    standard_address_space.fill_address_space(iserver.node_mgt_service)
    for node in iserver.aspace._nodes.values():
        make_node_read_only(node)


def _load_or_build(iserver: InternalServer, path: Path) -> Encoded | None:
    """The encoded standard nodes; None when they could only be built live (never cached)."""
    try:
        return read_cache(path)
    except CacheInvalid as why:
        reason = str(why)
    except Exception as error:  # whatever else a damaged file may cause: it is only a cache
        reason = repr(error)
    log.info("building the OPC UA standard address space cache", path=str(path), reason=reason)
    build_standard_nodes(iserver)
    try:
        encoded = encode_nodes(iserver.aspace._nodes)
    except Exception as error:  # an unpicklable node (a newer asyncua?): serve without a cache
        log.warning("cannot encode the OPC UA standard address space", error=repr(error))
        return None
    try:
        write_cache(path, encoded)
    except Exception as error:  # a full or read-only disk must not stop the daemon
        log.warning("cannot write the OPC UA standard address space cache; the next start "
                    "builds it again", path=str(path), error=repr(error))
    return encoded


async def load_standard_nodes(iserver: InternalServer, path: Path) -> None:
    """Fill `iserver`'s (empty) address space with the standard nodes, from the cache at `path`
    when it is valid, else built and cached for the next start."""
    encoded = await asyncio.to_thread(_load_or_build, iserver, path)
    if encoded is not None:  # else the table asyncua built stays, as without a cache
        iserver.aspace._nodes = LazyNodes(encoded)  # type: ignore[assignment]
