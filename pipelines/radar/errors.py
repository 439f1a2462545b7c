"""The one error type for input that cannot be ingested."""

from __future__ import annotations

from pathlib import Path


class BadInputError(ValueError):
    """A file that cannot become a frame. ``str()`` is one line: the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")
