"""Opening llmdeploy's own files (logs, records, requests) so that whatever else was
planted at their paths cannot hang or flood a command: a FIFO opened plainly blocks until
a writer (or reader) comes — forever, for a supervisor — and a device like /dev/zero never
ends. Only regular files are opened; anything else is an OSError, as an unreadable file is.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO, Literal

_FLAGS = {"rb": os.O_RDONLY, "ab": os.O_WRONLY | os.O_APPEND | os.O_CREAT}


def open_regular(path: Path | str, mode: Literal["rb", "ab"]) -> BinaryIO:
    """`open(path, mode)`, refusing anything but a regular file — without blocking on a
    FIFO to find out."""
    try:
        fd = os.open(path, _FLAGS[mode] | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO opened to write with no reader
            raise OSError(errno.EINVAL, "not a regular file", str(path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def read_small(path: Path, limit: int) -> bytes:
    """At most `limit + 1` bytes of one of our small files (a record, a request): the
    caller tells "too large" by the length. A symlink there is not ours either."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)
