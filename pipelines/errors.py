"""Errors as one line: what a log line, a status field or an HTTP reply shows of them."""

from __future__ import annotations


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with every run of whitespace (newlines too) made one space, cut at ``limit``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, cut at ``limit`` characters.

    Only the first line: Icechunk's errors carry a multi-line Rust trace after it.
    """
    lines = str(exc).strip().splitlines()
    return one_line(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__, limit)
