"""Errors as one line: what a log line, a status field or an HTTP reply shows of them."""

from __future__ import annotations


def error_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, cut at ``limit`` characters."""
    text = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
