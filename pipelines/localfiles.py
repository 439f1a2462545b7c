"""Two primitives on local files, shared by the stores, the model registry and ``motioncast up``:
an exclusive lock file (flock: released when its holder exits, even by kill -9) and a JSON file
replaced atomically (a reader sees the old file or the new one, never half of one)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_POLL_S = 0.02


class LockBusy(RuntimeError):
    """Another holder kept the lock longer than the caller would wait."""


def file_mode() -> int:
    """0o666 less the process umask: the mode ``open`` would give a new file (``mkstemp``'s are
    0o600, unreadable by a service running as another user)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return 0o644


@contextlib.contextmanager
def exclusive(path: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of the lock file ``path`` (created when absent; it stays): wait
    for it at most ``timeout_s`` (0: not at all; None: as long as it takes), else LockBusy."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
    try:
        if timeout_s is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockBusy(f"{path} is held by another process") from None
                    time.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically, through a temporary file of its own in the same folder
    (synced before the rename; removed on failure)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), file_mode())
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
