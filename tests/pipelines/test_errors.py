"""One-line errors: what the cycle's status, the service's replies and the store's errors show."""

from __future__ import annotations

from pipelines.errors import error_line, one_line


def test_error_line_keeps_the_type_and_the_first_line_only() -> None:
    trace = RuntimeError("storage refused the write\n  0: icechunk::storage::s3\n  1: tokio")
    assert error_line(trace) == "RuntimeError: storage refused the write"
    assert error_line(KeyError()) == "KeyError"


def test_lines_are_cut_at_their_limit() -> None:
    page = "an HTML\n  page\tof 40 characters, once flattened"
    assert one_line(page, 20) == "an HTML page of 4..."
    assert len(error_line(ValueError("x" * 500), 120)) == 120
    assert one_line("short") == "short"
