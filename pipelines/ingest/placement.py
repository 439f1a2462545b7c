"""Where a file set aside (ingested, quarantined) goes: never over another file."""

from __future__ import annotations

import filecmp
import itertools
from pathlib import Path


def free_path(target: Path, source: Path | None = None) -> Path:
    """``target``, or ``<stem>~N<suffixes>`` with the first N that names no file yet.

    A candidate that already holds the same bytes as ``source`` is returned as is: setting the
    same file aside twice keeps one copy, two different files keep two.
    """
    name = target.name
    stem, dot, suffixes = name.partition(".")
    for n in itertools.count():
        candidate = target if n == 0 else target.with_name(f"{stem}~{n}{dot}{suffixes}")
        if not candidate.exists():
            return candidate
        if source is not None and source.exists() and filecmp.cmp(source, candidate, shallow=False):
            return candidate
    raise AssertionError("unreachable")
