"""Files: writing atomically (a crash or Ctrl-C leaves the old file or the new one, never half of one) and
reading a regular file of bounded size.

A save writes a temporary file beside the target and renames it over the target. The temporary's name
is `.<start of the target's name>~<hash of the name>.<random>.chaingrad-tmp`: short enough for the
folder's file system, recognisably chaingrad's, and tied to its target, so that the next save to that
target can remove the temporaries a killed process left behind, and nothing else. A save in progress
holds a lock on its temporary (where the platform has `fcntl`), which keeps other saves from removing it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from .checks import positive_int

try:
    import fcntl
except ImportError:  # Windows: no locks; a temporary untouched for an hour counts as abandoned
    fcntl = None  # type: ignore[assignment]

__all__ = ["TEMP_SUFFIX", "atomic_write", "read_regular"]

TEMP_SUFFIX = ".chaingrad-tmp"
_RANDOM_HEX = 8
_UNLOCKED_STALE_AFTER = 3600.0  # seconds; only where there are no locks
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def _name_max(folder: str) -> int:
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or the folder does not exist
        limit = 255
    return min(limit, 255) if limit > 0 else 255


def _temp_prefix(folder: str, base: str) -> str:
    """What every temporary of `base` starts with: '.', as much of base as fits, '~', a hash of base."""
    tag = hashlib.sha256(os.fsencode(base)).hexdigest()[:8]
    room = _name_max(folder) - len(f".~{tag}.") - _RANDOM_HEX - len(TEMP_SUFFIX)
    short = base
    while len(os.fsencode(short)) > room:  # NAME_MAX counts bytes, not characters
        short = short[:-1]
    return f".{short}~{tag}."


def _lock(fd: int, wait: bool) -> bool:
    """Take an exclusive lock on fd; False if wait is False and another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _same_file(path: str, fd: int) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    st = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _remove_abandoned(folder: str, prefix: str) -> None:
    """Remove the temporaries of this target that no running save holds (left by a killed process)."""
    pattern = re.compile(re.escape(prefix) + f"[0-9a-f]{{{_RANDOM_HEX}}}" + re.escape(TEMP_SUFFIX))
    try:
        names = [e.path for e in os.scandir(folder) if pattern.fullmatch(e.name)]
    except OSError:
        return
    for path in names:
        with contextlib.suppress(OSError):  # gone already, or not ours to remove: never fail a save
            fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
            try:
                abandoned = _lock(fd, wait=False) and (
                    fcntl is not None or time.time() - os.fstat(fd).st_mtime > _UNLOCKED_STALE_AFTER
                )
                if abandoned and stat.S_ISREG(os.fstat(fd).st_mode) and _same_file(path, fd):
                    os.unlink(path)
            finally:
                os.close(fd)


def _keep_owner_and_mode(fd: int, tmp: str, target: str, old: os.stat_result) -> None:
    """Give the new file the old one's owner (where permitted), mode and extended attributes (ACLs)."""
    if hasattr(os, "fchown"):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except PermissionError:  # only root may give a file away; the group may still be ours to keep
            with contextlib.suppress(OSError):
                os.fchown(fd, -1, old.st_gid)
    # after chown, which clears the set-id bits
    os.chmod(fd if os.chmod in os.supports_fd else tmp, stat.S_IMODE(old.st_mode))
    if hasattr(os, "listxattr"):
        with contextlib.suppress(OSError):
            for name in os.listxattr(target):
                with contextlib.suppress(OSError):
                    os.setxattr(fd, name, os.getxattr(target, name))


def _create_temp(folder: str, prefix: str, mode: int) -> tuple[str, int]:
    """A new temporary, locked. If another save removed it between creating and locking (it looked
    abandoned for that instant), make another."""
    while True:
        tmp = os.path.join(folder, prefix + secrets.token_hex(_RANDOM_HEX // 2) + TEMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, mode)
        _lock(fd, wait=True)
        if _same_file(tmp, fd):
            return tmp, fd
        os.close(fd)


def _name(path: Any) -> str:
    """path as a str: a str or an os.PathLike of one (a bytes path is refused, as the names here are text)."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(name, str):
        raise TypeError(f"a file path is a str or a pathlib.Path, not {type(path).__name__} {path!r:.60}")
    if not name:
        raise ValueError("the file path is empty; give a file's name, e.g. 'model.json'")
    return name


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call write(f) on a temporary file beside path, flush it to disk, then rename it over path.

    A file already at path keeps its mode, its owner (where permitted) and its extended attributes.
    If path is a symlink, the file it points to is replaced (atomically, beside it) and the link stays.
    Anything at path other than a regular file (a folder, a FIFO, a device) is refused with a ValueError
    before anything is written.
    """
    target = os.path.realpath(_name(path))
    folder, base = os.path.split(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "no such folder to write the file into", os.fspath(path))
    prefix = _temp_prefix(folder, base)
    _remove_abandoned(folder, prefix)
    try:
        old: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise ValueError(
            f"{os.fspath(path)}: not a regular file ({_kind(old.st_mode)}); only regular files are replaced"
        )
    # A new file gets the usual permissions (0666 less the umask); a replacement starts private and
    # takes the old file's mode before anything is written into it.
    tmp, fd = _create_temp(folder, prefix, 0o666 if old is None else 0o600)
    try:
        with open(fd, "wb") as f:
            if old is not None:
                _keep_owner_and_mode(fd, tmp, target, old)
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if os.name == "posix":  # rename while still holding the lock, so no other save removes it
                os.replace(tmp, target)
        if os.name != "posix":  # Windows cannot rename an open file
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_regular(path: str | os.PathLike[str], max_bytes: int, advice: str = "") -> bytes:
    """The content of the regular file at path, if it holds at most max_bytes bytes.

    Anything else (a FIFO, a device such as /dev/zero, a folder) is refused with a ValueError without
    reading from it: opening does not wait for a FIFO's writer. A larger file is a ValueError too,
    ending with `advice`.
    """
    name, max_bytes = _name(path), positive_int(max_bytes, "max_bytes")
    fd = os.open(name, os.O_RDONLY | _NONBLOCK | _BINARY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name}: not a regular file ({_kind(st.st_mode)}); only files are read")
        # The size can change after fstat, so never read more than the limit either way.
        with open(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1) if st.st_size <= max_bytes else b""
    finally:
        os.close(fd)
    if st.st_size > max_bytes or len(data) > max_bytes:
        size = f"{st.st_size:,} bytes" if st.st_size > max_bytes else "grew while being read and"
        raise ValueError(f"{name}: {size} is more than the limit of {max_bytes:,} bytes{advice}")
    return data


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "something else"
