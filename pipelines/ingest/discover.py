"""Which files a list of paths (files or folders, searched recursively) names."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# written by us, half-written by others, or configuration: never radar data
_SKIP_SUFFIXES = (".part", ".tmp", ".reason.txt", ".lock", ".yaml", ".yml")


def _wanted(path: Path) -> bool:
    return not path.name.startswith(".") and not path.name.endswith(_SKIP_SUFFIXES)


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, and every file below named folders, sorted, without duplicates.

    Raises FileNotFoundError naming the first path that does not exist.
    """
    found: dict[Path, None] = {}
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if (
                    child.is_file()
                    and _wanted(child)
                    and not any(part.startswith(".") for part in child.relative_to(path).parts)
                ):
                    found[child] = None
        elif path.is_file():
            found[path] = None
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return list(found)
