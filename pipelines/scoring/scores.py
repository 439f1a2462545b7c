"""Forecast scores through pysteps.verification, per lead time, pooled over cells and forecasts.

Every method is scored on the same cells: ``Scores.add`` takes the mask of cells to score
(observed, and valued by every method) and hands pysteps NaN everywhere else, which its
contingency tables and continuous scores ignore (and its FSS counts as no event in both fields).
Events are counted as pysteps counts them: value > threshold in the contingency tables
(``det_cat_fct``), value >= threshold in FSS (``fss``). The accumulators are pysteps' own and
merge with its ``*_merge`` functions, so that windows, batches and workers pool exactly
(``Scores.vector`` / ``from_vector`` carry them between processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.radar.pysteps_io import verification

CATEGORICAL = ("hits", "misses", "false_alarms", "correct_negatives")
CONTINUOUS = ("cov", "vobs", "vpred", "mobs", "mpred", "me", "mse", "mss", "mae", "n")
FSS_SUMS = ("sum_fct_sq", "sum_fct_obs", "sum_obs_sq")
CONTINUOUS_SCORES = ("MAE", "RMSE", "ME")


CATEGORICAL_SCORES = ("CSI", "POD", "FAR", "BIAS")  # pysteps' names; bias: frequency bias


def metric_name(threshold_mm_h: float, score: str = "CSI") -> str:
    """'csi_1mm' for 1.0, 'csi_0.5mm' for 0.5; 'pod_1mm', 'far_1mm', 'bias_1mm' likewise."""
    return f"{score.lower()}_{threshold_mm_h:g}mm"


def fss_name(threshold_mm_h: float, scale: int) -> str:
    """'fss_1mm_10' for 1 mm/h at a 10-cell scale."""
    return f"fss_{threshold_mm_h:g}mm_{scale}"


@dataclass(frozen=True)
class ScoreSpec:
    """What to score: the number of leads, the CSI thresholds, FSS thresholds and scales."""

    leads: int
    thresholds: tuple[float, ...]
    fss_thresholds: tuple[float, ...] = ()
    fss_scales: tuple[int, ...] = ()


class Scores:
    """pysteps accumulators of one method: contingency tables per threshold and continuous
    errors (both per lead, ``axis`` = the two spatial axes), FSS per threshold, scale and lead."""

    def __init__(self, spec: ScoreSpec):
        self.spec = spec
        n = spec.leads
        self.categorical = {}
        for t in spec.thresholds:
            table = verification.det_cat_fct_init(t, axis=(1, 2))
            for key in CATEGORICAL:
                table[key] = np.zeros(n, dtype=np.int64)
            self.categorical[t] = table
        self.continuous = verification.det_cont_fct_init(axis=(1, 2))
        for key in CONTINUOUS:
            self.continuous[key] = np.zeros(n)
        self.fss = {
            (t, s): [verification.fss_init(t, s) for _ in range(n)]
            for t in spec.fss_thresholds
            for s in spec.fss_scales
        }

    def add(self, forecast: np.ndarray, observed: np.ndarray, cells: np.ndarray) -> None:
        """Score (leads, H, W) forecasts against observations (mm/h) on the cells of ``cells``."""
        f = np.where(cells, forecast, np.nan).astype(np.float64)
        o = np.where(cells, observed, np.nan).astype(np.float64)
        outside = (~np.broadcast_to(cells, f.shape)).sum(axis=(1, 2))
        for table in self.categorical.values():
            verification.det_cat_fct_accum(table, f, o)
            # pysteps counts a NaN pair as a correct negative (NaN > t is False): unknown is
            # not dry, so the cells outside the mask come off again
            table["correct_negatives"] -= outside
        if cells.any():  # pysteps' running means take no empty batch
            verification.det_cont_fct_accum(self.continuous, f, o)
        for per_lead in self.fss.values():
            for k, acc in enumerate(per_lead):
                verification.fss_accum(acc, f[k], o[k])

    def merge(self, other: Scores) -> Scores:
        """These scores pooled with ``other``'s (pysteps' merge functions), as a new object.
        (pysteps merges into the first object's arrays: it gets copies.)"""
        out = Scores(self.spec)
        out.categorical = {
            t: verification.det_cat_fct_merge(_copy(a), other.categorical[t])
            for t, a in self.categorical.items()
        }
        out.continuous = verification.det_cont_fct_merge(_copy(self.continuous), other.continuous)
        out.fss = {
            key: [
                verification.fss_merge(_copy(a), b)
                for a, b in zip(accs, other.fss[key], strict=True)
            ]
            for key, accs in self.fss.items()
        }
        return out

    def vector(self) -> np.ndarray:
        """Every accumulator as one flat float64 vector (to gather from other processes)."""
        parts = [self.categorical[t][k] for t in self.categorical for k in CATEGORICAL]
        parts += [self.continuous[k] for k in CONTINUOUS]
        parts += [np.array([a[k] for a in accs]) for accs in self.fss.values() for k in FSS_SUMS]
        return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])

    def from_vector(self, values: np.ndarray) -> Scores:
        """Scores of this layout holding ``values`` (as ``vector`` gives them)."""
        out, n, offset = Scores(self.spec), self.spec.leads, 0

        def take() -> np.ndarray:
            nonlocal offset
            offset += n
            return np.asarray(values[offset - n : offset])

        for t in out.categorical:
            for k in CATEGORICAL:
                out.categorical[t][k] = take().round().astype(np.int64)
        for k in CONTINUOUS:
            out.continuous[k] = take().astype(np.float64)
        for accs in out.fss.values():
            for k in FSS_SUMS:
                for acc, v in zip(accs, take(), strict=True):
                    acc[k] = float(v)
        return out

    def pool(self, vectors: np.ndarray) -> Scores:
        """Scores of this layout pooled over many ``vector``s (rows), as merging them one by
        one would give: the contingency tables and FSS sums add; the continuous running means
        merge with pysteps' ``det_cont_fct_merge`` (the only part that does not add)."""
        vectors = np.asarray(vectors, dtype=np.float64).reshape(-1, self.vector().size)
        out = self.from_vector(vectors.sum(axis=0))
        n = self.spec.leads
        first = len(self.categorical) * len(CATEGORICAL) * n
        continuous = Scores(self.spec).continuous
        for row in vectors[:, first : first + len(CONTINUOUS) * n]:
            if not row[CONTINUOUS.index("n") * n : (CONTINUOUS.index("n") + 1) * n].any():
                continue  # nothing scored there: pysteps' merge takes no empty part
            part = dict(
                continuous, **{k: row[i * n : (i + 1) * n] for i, k in enumerate(CONTINUOUS)}
            )
            continuous = verification.det_cont_fct_merge(_copy(continuous), part)
        out.continuous = continuous
        return out

    def summary(self) -> dict[str, Any]:
        """Scores pooled over every lead, and per lead (lists, lead 1 first); None where
        undefined. Keys: csi_<t>mm, pod_<t>mm, far_<t>mm, bias_<t>mm (frequency bias),
        fss_<t>mm_<scale>, mae, rmse, me, mse (mm/h)."""
        per_lead: dict[str, np.ndarray] = {}
        pooled: dict[str, float] = {}
        for t, table in self.categorical.items():
            summed = {**table, **{k: table[k].sum() for k in CATEGORICAL}}
            with np.errstate(invalid="ignore", divide="ignore"):
                lead_values = verification.det_cat_fct_compute(table, CATEGORICAL_SCORES)
                pooled_values = verification.det_cat_fct_compute(summed, CATEGORICAL_SCORES)
            for score in CATEGORICAL_SCORES:
                per_lead[metric_name(t, score)] = lead_values[score]
                pooled[metric_name(t, score)] = pooled_values[score]
        for (t, s), accs in self.fss.items():
            per_lead[fss_name(t, s)] = np.array([verification.fss_compute(a) for a in accs])
            pooled[fss_name(t, s)] = verification.fss_compute(
                {**accs[0], **{k: sum(a[k] for a in accs) for k in FSS_SUMS}}
            )
        n = self.continuous["n"]
        with np.errstate(invalid="ignore", divide="ignore"):
            if n.any():
                values = verification.det_cont_fct_compute(self.continuous, CONTINUOUS_SCORES)
                for name in CONTINUOUS_SCORES:
                    per_lead[name.lower()] = np.where(n > 0, values[name], np.nan)
            else:
                for name in CONTINUOUS_SCORES:
                    per_lead[name.lower()] = np.full(self.spec.leads, np.nan)
            per_lead["mse"] = per_lead["rmse"] ** 2
            weight = n / n.sum() if n.sum() else np.full_like(n, np.nan)
            for name in ("mae", "me", "mse"):
                pooled[name] = float(np.nansum(weight * per_lead[name])) if n.sum() else np.nan
            pooled["rmse"] = float(np.sqrt(pooled["mse"]))
        out: dict[str, Any] = {k: _clean(v) for k, v in pooled.items()}
        out["per_lead"] = {k: [_clean(x) for x in v] for k, v in per_lead.items()}
        return out


def _copy(accumulator: dict[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in accumulator.items()}


def _clean(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)
