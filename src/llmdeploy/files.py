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


def _regular_fd(path: Path | str, flags: int) -> int:
    """A descriptor of the regular file at `path`, opened without blocking (a FIFO would
    block open() itself); anything else is an OSError "not a regular file"."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO opened to write with no reader
            raise OSError(errno.EINVAL, "not a regular file", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def open_regular(path: Path | str, mode: Literal["rb", "ab"]) -> BinaryIO:
    """`open(path, mode)`, refusing anything but a regular file."""
    fd = _regular_fd(path, _FLAGS[mode])
    try:  # blocking again: it is a file, and callers expect whole reads and writes
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def read_small(path: Path, limit: int) -> bytes:
    """At most `limit + 1` bytes of one of our small files (a record, a request): the
    caller tells "too large" by the length. A symlink there is not ours either."""
    with os.fdopen(_regular_fd(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
        return handle.read(limit + 1)
