"""A sliding window of submitted work: what is decoded ahead of the committing process stays a
few frames, however many files a run has (a continental MRMS frame is 98 MB)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TypeVar

Item = TypeVar("Item")
Handle = TypeVar("Handle")


def in_flight(
    items: Iterable[Item], submit: Callable[[Item], Handle], ahead: int
) -> Iterator[tuple[Item, Handle]]:
    """Each item with what ``submit`` returned for it (a future), in order, while at most
    ``ahead`` are submitted and not yet taken: taking one submits the next.

    The first ``ahead`` are submitted on the call, not on the first ``next``: a process pool
    of the fork context starts its workers then, before the caller opens a store (whose runtime
    threads a forked child must not inherit)."""
    if ahead < 1:
        raise ValueError(f"at least one item must be in flight, not {ahead}")
    pending = iter(items)
    window = deque((item, submit(item)) for item in islice(pending, ahead))

    def take() -> Iterator[tuple[Item, Handle]]:
        while window:
            taken = window.popleft()
            window.extend((item, submit(item)) for item in islice(pending, 1))
            yield taken

    return take()
