"""One writer per run directory: an advisory lock held while a command writes a run.

``pbrf run``, ``pbrf step`` and ``pbrf report`` hold ``<run>/.pbrf/lock`` (``fcntl.flock``) for
as long as they may write the directory. The kernel releases the lock when its holder exits for
any reason — normal exit, Ctrl-C, ``kill -9`` — so a lock is never left stale. A second command
on the same directory does not wait: it fails at once with :class:`RunLockedError`, whose
message names the holder (pid, host, command, start time) read from the lock file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = Path(".pbrf") / "lock"


class RunLockedError(RuntimeError):
    """Another process is writing the run directory."""

    def __init__(self, root: Path, holder: str) -> None:
        self.root, self.holder = root, holder
        super().__init__(
            f"{root} is being written by {holder}; wait for it to finish, or write to another "
            "directory (--out)"
        )


def _describe(raw: str) -> str:
    try:
        info = json.loads(raw)
    except ValueError:
        return "another process"
    started = time.strftime("%H:%M:%S", time.localtime(float(info.get("started", 0))))
    return (
        f"pid {info.get('pid')} on {info.get('host')} (`{info.get('command')}`, started {started})"
    )


@contextmanager
def run_lock(root: Path | str, command: str | None = None) -> Iterator[Path]:
    """Hold the write lock of run directory ``root`` (created if missing) for the block."""
    root = Path(root)
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _describe(os.pread(fd, 4096, 0).decode(errors="replace"))
            raise RunLockedError(root, holder) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command or " ".join(["pbrf", *sys.argv[1:]]),
            "started": time.time(),
        }
        with contextlib.suppress(OSError):  # who holds it is a courtesy (a full disk refuses it)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
