"""Rain rate <-> the model's scale: pysteps' dB transform, mapped linearly to about [0, 1].

    dB = 10 log10(R)          for R >= threshold, else zerovalue
    x  = (dB - zerovalue) / (max_db - zerovalue)

and back: R = 10^(dB / 10) where dB >= 10 log10(threshold), else 0. Rates at or above the
threshold round-trip exactly (to float precision); rates below it become 0, as in pysteps.
"""

from __future__ import annotations

import numpy as np

from pipelines.config import TransformConfig


class RainTransform:
    def __init__(self, cfg: TransformConfig):
        self.threshold = cfg.threshold_mm_h
        self.zero_db = cfg.zerovalue_db
        self.span_db = cfg.max_db - cfg.zerovalue_db
        self.threshold_db = 10.0 * np.log10(cfg.threshold_mm_h)
        if not self.zero_db < self.threshold_db < cfg.max_db:
            raise ValueError("need zerovalue_db < 10 log10(threshold) < max_db")

    def forward(self, rate: np.ndarray) -> np.ndarray:
        """mm/h -> model scale; NaN (unknown) stays NaN."""
        rate = np.asarray(rate, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            db = np.where(rate >= self.threshold, 10.0 * np.log10(rate), self.zero_db)
        db = np.where(np.isnan(rate), np.nan, db)
        return ((db - self.zero_db) / self.span_db).astype(np.float32)

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        """Model scale -> mm/h (0 below the threshold)."""
        db = np.asarray(scaled, dtype=np.float32) * self.span_db + self.zero_db
        return np.where(db >= self.threshold_db, 10.0 ** (db / 10.0), 0.0).astype(np.float32)
