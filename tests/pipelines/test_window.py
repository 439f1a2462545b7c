"""The sliding window of submitted decodes: bounded, in order, primed on the call."""

import pytest

from pipelines.ingest.window import in_flight


def test_at_most_ahead_are_submitted_and_not_taken_and_order_is_kept():
    submitted: list[int] = []
    window = in_flight(range(10), lambda i: submitted.append(i) or f"future {i}", ahead=3)
    assert submitted == [0, 1, 2]  # on the call: a forking pool starts its workers now
    taken = []
    for item, future in window:
        taken.append(item)  # taking one submitted the next: the pool never runs dry
        assert len(submitted) - len(taken) == min(3, 10 - len(taken))
        assert future == f"future {item}"
    assert taken == list(range(10)) and submitted == list(range(10))


def test_fewer_items_than_the_window_and_a_window_of_nothing():
    assert list(in_flight([7], lambda i: i * 2, ahead=4)) == [(7, 14)]
    assert list(in_flight([], lambda i: i, ahead=4)) == []
    with pytest.raises(ValueError, match="at least one"):
        in_flight([1], lambda i: i, ahead=0)
