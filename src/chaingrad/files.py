"""Files: writing atomically (a crash or Ctrl-C leaves the old file or the new one, never half of one) and
reading a regular file of bounded size.

A save writes a temporary file beside the target, flushes it to disk and renames it over the target.
The temporary's name is `.<start of the target's name>~<hash of the name>.<random>.chaingrad-tmp`:
short enough for the folder's file system and recognisably chaingrad's. An error or Ctrl-C during a
save removes it; a process killed outright (SIGKILL, power loss) leaves it behind, beside an intact
old file, to be deleted by hand.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from typing import Any, BinaryIO

from .checks import positive_int

__all__ = ["TEMP_SUFFIX", "atomic_write", "read_regular"]

TEMP_SUFFIX = ".chaingrad-tmp"
_RANDOM_HEX = 8
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

    A file already at path keeps its mode. If path is a symlink, the file it points to is replaced
    (atomically, beside it) and the link stays. Anything at path other than a regular file (a folder,
    a FIFO, a device) is refused with a ValueError before anything is written.
    """
    target = os.path.realpath(_name(path))
    folder, base = os.path.split(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "no such folder to write the file into", os.fspath(path))
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
    prefix = _temp_prefix(folder, base)
    tmp = os.path.join(folder, prefix + secrets.token_hex(_RANDOM_HEX // 2) + TEMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o666 if old is None else 0o600)
    try:
        with open(fd, "wb") as f:
            if old is not None:
                os.chmod(fd if os.chmod in os.supports_fd else tmp, stat.S_IMODE(old.st_mode))
            write(f)
            f.flush()
            os.fsync(f.fileno())
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
        # The size can change after fstat: read one byte more than it said, to see whether it grew
        # (any max_bytes works, even one far beyond memory: only the file's size is asked for).
        with open(fd, "rb", closefd=False) as f:
            data = f.read(st.st_size + 1) if st.st_size <= max_bytes else b""
    finally:
        os.close(fd)
    if st.st_size > max_bytes:
        size = f"{st.st_size:,} bytes"
        raise ValueError(f"{name}: {size} is more than the limit of {max_bytes:,} bytes{advice}")
    if len(data) > st.st_size:
        raise ValueError(f"{name}: the file grew while being read (is another program writing it?)")
    return data


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "something else"
