"""Is one method better than another on the same forecasts? A paired bootstrap over windows.

Each window (one forecast and its observations) contributes a contingency table per lead for
the event "value > threshold" (pysteps' convention), for both methods on the same cells. A
resample draws windows with replacement, pools their tables per lead, and takes the mean over
leads of CSI of each method; the difference of the two, over many resamples, gives a
confidence interval. Windows, not cells, are what is resampled: cells of one forecast are far
from independent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95


def event_counts(
    forecast: np.ndarray, observed: np.ndarray, cells: np.ndarray, threshold: float
) -> np.ndarray:
    """(leads, 3) hits, misses and false alarms of (leads, H, W) fields on ``cells``."""
    f = (np.nan_to_num(forecast, nan=-np.inf) > threshold) & cells
    o = (np.nan_to_num(observed, nan=-np.inf) > threshold) & cells
    return np.stack(
        [(f & o).sum(axis=(1, 2)), (~f & o).sum(axis=(1, 2)), (f & ~o).sum(axis=(1, 2))], axis=1
    )


def mean_csi(counts: np.ndarray) -> np.ndarray:
    """Mean over leads of CSI from pooled (..., leads, 3) counts (leads without events left
    out); NaN where no lead has any."""
    hits, misses, false = counts[..., 0], counts[..., 1], counts[..., 2]
    total = hits + misses + false
    with np.errstate(invalid="ignore", divide="ignore"):
        csi = np.where(total > 0, hits / total, np.nan)
        return np.nanmean(csi, axis=-1) if csi.size else np.nan


def paired_bootstrap(
    method: np.ndarray,
    baseline: np.ndarray,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean CSI over leads of ``method`` minus ``baseline`` from per-window counts
    (windows, leads, 3) of each, and its bootstrap interval over windows."""
    if method.shape != baseline.shape or method.ndim != 3 or len(method) == 0:
        raise ValueError(
            f"need per-window counts of one shape, got {method.shape}, {baseline.shape}"
        )
    n = len(method)
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    pooled_m = method[draws].sum(axis=1)  # (resamples, leads, 3)
    pooled_b = baseline[draws].sum(axis=1)
    with np.errstate(invalid="ignore"):
        differences = mean_csi(pooled_m) - mean_csi(pooled_b)
    differences = differences[np.isfinite(differences)]
    tail = (1.0 - confidence) / 2.0
    lower, upper = (
        np.quantile(differences, [tail, 1.0 - tail]) if differences.size else (np.nan, np.nan)
    )
    return {
        "difference": float(mean_csi(method.sum(axis=0)) - mean_csi(baseline.sum(axis=0))),
        "lower": float(lower),
        "upper": float(upper),
        "confidence": confidence,
        "windows": n,
        "resamples": resamples,
    }
