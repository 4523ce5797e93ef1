"""One `make run` per data directory: an exclusive flock on `.data/devstack.lock`.

A second run on the same `.data/` used to fail on taken ports and, while stopping, shut down the
first run's embedded Redis. Now it takes this lock before touching anything and refuses at once
when the lock is held. The kernel releases a flock when the last descriptor of it closes, so a
crashed run leaves no stale lock; the stack's children inherit the descriptor, so the lock stays
held while any of them lives, even if the parent was killed.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "devstack.lock"


class DataDirInUse(Exception):
    """Another process holds the lock; the message says which one and what to do."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"another `make run` (pid {holder}) is already using {self.path.parent}/; "
                "stop it first (Ctrl-C in its terminal), or run this one from another clone "
                "or with DATABASE_URL/REDIS_URL and other ports. Nothing was started or stopped."
            ) from None
        # Only the holder writes its pid, so a refused run never changes the file.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @property
    def fd(self) -> int:
        """The locked descriptor, for children that should keep the lock held (pass_fds)."""
        if self._fd is None:
            raise RuntimeError("the lock is not held")
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None
