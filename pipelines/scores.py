"""Forecast scores pooled over cells and forecasts, per lead time: MSE, MAE (mm/h) and CSI.

Sums, not means, are kept, so that scores from several workers or batches add up exactly
(``ScoreSums.vector`` / ``from_vector`` for an all-reduce) and pooled contingency tables give
the CSI over everything scored, as verification practice (and pysteps) does. An event is a rate
at or above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def metric_name(threshold_mm_h: float) -> str:
    """'csi_1mm' for 1.0, 'csi_0.5mm' for 0.5."""
    return f"csi_{threshold_mm_h:g}mm"


@dataclass
class ScoreSums:
    leads: int
    thresholds: tuple[float, ...]
    n: np.ndarray = field(init=False)  # (leads,) cells scored
    abs_error: np.ndarray = field(init=False)  # (leads,) sum |f - o|
    sq_error: np.ndarray = field(init=False)  # (leads,) sum (f - o)^2
    hits: np.ndarray = field(init=False)  # (thresholds, leads)
    misses: np.ndarray = field(init=False)
    false_alarms: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        k, n = len(self.thresholds), self.leads
        self.n, self.abs_error, self.sq_error = np.zeros(n), np.zeros(n), np.zeros(n)
        self.hits, self.misses, self.false_alarms = (
            np.zeros((k, n)),
            np.zeros((k, n)),
            np.zeros((k, n)),
        )

    def add(self, forecast: np.ndarray, observed: np.ndarray, mask: np.ndarray) -> None:
        """Score (leads, H, W) forecasts against observations (mm/h) on the cells of ``mask``."""
        f = np.where(mask, forecast, 0.0).astype(np.float64)
        o = np.where(mask, observed, 0.0).astype(np.float64)
        axes = tuple(range(1, f.ndim))
        self.n += mask.sum(axis=axes)
        self.abs_error += np.abs(f - o).sum(axis=axes)
        self.sq_error += ((f - o) ** 2).sum(axis=axes)
        for i, t in enumerate(self.thresholds):
            fe, oe = (f >= t) & mask, (o >= t) & mask
            self.hits[i] += (fe & oe).sum(axis=axes)
            self.misses[i] += (~fe & oe).sum(axis=axes)
            self.false_alarms[i] += (fe & ~oe).sum(axis=axes)

    def vector(self) -> np.ndarray:
        """All sums as one flat vector (for an all-reduce)."""
        parts = [self.n, self.abs_error, self.sq_error, self.hits, self.misses, self.false_alarms]
        return np.concatenate([p.ravel() for p in parts])

    def from_vector(self, values: np.ndarray) -> ScoreSums:
        """A copy of this layout holding ``values`` (as ``vector`` gives them)."""
        out = ScoreSums(self.leads, self.thresholds)
        n, k = self.leads, len(self.thresholds)
        out.n, out.abs_error, out.sq_error = (values[i * n : (i + 1) * n] for i in range(3))
        tables = values[3 * n :].reshape(3, k, n)
        out.hits, out.misses, out.false_alarms = tables[0], tables[1], tables[2]
        return out

    def _csi(self, pooled: bool) -> np.ndarray:
        """(thresholds,) over all leads if pooled, else (thresholds, leads)."""
        tables = (self.hits, self.misses, self.false_alarms)
        hits, misses, fa = (a.sum(axis=1) if pooled else a for a in tables)
        total = hits + misses + fa
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, hits / total, np.nan)

    def summary(self) -> dict[str, Any]:
        """Pooled over all leads, and per lead (lists, lead 1 first); None where undefined."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mae_lead, mse_lead = self.abs_error / self.n, self.sq_error / self.n
            total = self.n.sum()
            out: dict[str, Any] = {
                "mse": self.sq_error.sum() / total if total else np.nan,
                "mae": self.abs_error.sum() / total if total else np.nan,
            }
        csi_all, csi_lead = self._csi(pooled=True), self._csi(pooled=False)
        for i, t in enumerate(self.thresholds):
            out[metric_name(t)] = csi_all[i]
        per_lead: dict[str, Any] = {"mse": mse_lead, "mae": mae_lead}
        for i, t in enumerate(self.thresholds):
            per_lead[metric_name(t)] = csi_lead[i]
        out["per_lead"] = {k: [_clean(x) for x in v] for k, v in per_lead.items()}
        return {k: (v if k == "per_lead" else _clean(v)) for k, v in out.items()}


def _clean(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)
