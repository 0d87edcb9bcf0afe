"""Files that hold secrets (users file, `sim-credentials`, the instrument key): no symlinks, 0600.

A secret file is opened with O_NOFOLLOW, so a symbolic link planted where it belongs (by someone
who can write the directory but not the file) is refused instead of followed: following it would
write a password or a private key wherever the link points, or read one from there. A file that
already exists is brought to its mode on every write, so a file left group- or world-readable by
an older version or an administrator's `cp` does not stay so. Whole-file writes go through a new
file in the same directory and a rename: a crash leaves the old file or the new one, never half
of one (a half-written users file would lock everyone out).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


class PrivateFileError(OSError):
    """A secret file cannot be used as it is (the message says why and what to do)."""


def _refuse_link(path: Path, error: OSError) -> PrivateFileError:
    if error.errno == errno.ELOOP:
        return PrivateFileError(
            f"{path} is a symbolic link; refusing to follow it for a file holding secrets "
            "(replace the link with the file itself)"
        )
    return PrivateFileError(f"{path}: {error.strerror or error}")


def _check_regular(path: Path, fd: int) -> os.stat_result:
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        raise PrivateFileError(f"{path} is not a regular file")
    return status


def _open_no_follow(path: Path) -> int:
    """A read descriptor of `path` itself: a symlink there is refused, never followed; a
    missing file raises FileNotFoundError as it is."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENOENT:
            raise
        raise _refuse_link(path, error) from None


def read_private(path: Path) -> bytes:
    """The file's bytes; a symlink or a non-regular file is refused."""
    fd = _open_no_follow(path)
    try:
        _check_regular(path, fd)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def enforce_mode(path: Path, mode: int = 0o600) -> bool:
    """Bring an existing secret file to `mode` (through an O_NOFOLLOW descriptor, so a link is
    refused, not changed). True when its mode had to change."""
    fd = _open_no_follow(path)
    try:
        status = _check_regular(path, fd)
        if stat.S_IMODE(status.st_mode) == mode:
            return False
        os.fchmod(fd, mode)
        return True
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write (create or truncate) in place with `mode`, also when the file exists with another
    mode; fsynced. For small files whose readers tolerate a rewrite (`sim-credentials`)."""
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
    except OSError as error:
        raise _refuse_link(path, error) from None
    try:
        _check_regular(path, fd)
        os.fchmod(fd, mode)
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_private(
    path: Path, data: bytes, mode: int = 0o600, owner: tuple[int, int] | None = None,
    exclusive: bool = False,
) -> None:
    """Write a new file beside `path` and rename it into place (atomic); `path` itself must not
    be a symlink. `owner` (uid, gid) is applied when allowed (root editing a file that belongs
    to the daemon's account). `exclusive`: fail with FileExistsError instead of replacing an
    existing file (two processes creating a key at once keep the first one)."""
    if path.is_symlink():
        raise PrivateFileError(
            f"{path} is a symbolic link; refusing to replace it for a file holding secrets "
            "(replace the link with the file itself)"
        )
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, *owner)
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if exclusive:
            os.link(temporary, path)  # atomic, and never over an existing file
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
        _fsync_directory(path.parent)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_directory(directory: Path) -> None:
    """The rename itself survives a power cut only once the directory is synced."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
