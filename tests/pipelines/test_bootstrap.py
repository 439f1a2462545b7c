"""The paired bootstrap that promotion trusts (pipelines.scoring.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.scoring.bootstrap import event_counts, mean_csi, paired_bootstrap


def test_event_counts_are_pysteps_events_on_the_cells_given() -> None:
    forecast = np.array([[[0.5, 2.0, 3.0], [1.0, np.nan, 4.0]]])  # (1 lead, 2, 3)
    observed = np.array([[[2.0, 2.0, 0.0], [1.5, 9.0, np.nan]]])
    cells = np.array([[[True, True, True], [True, False, False]]])
    # value > 1: hits (0,1); misses (0,0), (1,0); false alarms (0,2); the rest not scored
    np.testing.assert_array_equal(event_counts(forecast, observed, cells, 1.0), [[1, 2, 1]])


def test_mean_csi_leaves_out_leads_without_events() -> None:
    counts = np.array([[2, 1, 1], [0, 0, 0], [1, 1, 2]])  # CSI 0.5, none, 0.25
    assert mean_csi(counts) == pytest.approx(0.375)


def windows(rng: np.random.Generator, n: int, hit_share: float) -> np.ndarray:
    """(n, 3 leads, 3) counts of 100 events a window, of which hit_share hits (noisy)."""
    hits = rng.binomial(100, hit_share, size=(n, 3))
    return np.stack([hits, 100 - hits, np.full((n, 3), 20)], axis=-1)


def test_a_method_better_on_every_window_is_surely_better() -> None:
    rng = np.random.default_rng(0)
    base = windows(rng, 30, 0.5)
    better = base.copy()
    better[..., 0] += 5  # five more hits...
    better[..., 1] -= 5  # ...five fewer misses, in every window
    test = paired_bootstrap(better, base)
    assert test["lower"] > 0 and test["difference"] > 0 and test["windows"] == 30


def test_a_method_no_better_is_not_promoted_by_chance() -> None:
    rng = np.random.default_rng(1)
    a, b = windows(rng, 30, 0.5), windows(rng, 30, 0.5)  # the same skill, different noise
    test = paired_bootstrap(a, b)
    assert test["lower"] < 0 < test["upper"]
    same = paired_bootstrap(a, a)
    assert same["difference"] == same["lower"] == same["upper"] == 0.0


def test_one_lucky_window_is_not_enough() -> None:
    rng = np.random.default_rng(2)
    base = windows(rng, 20, 0.5)
    lucky = base.copy()
    lucky[0, :, 0] += 60  # a big win on one window...
    lucky[0, :, 1] -= 60
    lucky[1:, :, 0] -= 2  # ...and small losses on all the others
    lucky[1:, :, 1] += 2
    test = paired_bootstrap(lucky, base)
    assert test["difference"] > 0 and test["lower"] < 0
