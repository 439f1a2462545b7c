"""Each training worker draws its own windows: weighted by wet area, with replacement, from a
generator seeded by (seed, epoch, rank), so that ranks draw different windows, every epoch
differs, and a resumed run draws what the original would have."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class WeightedWindowSampler(torch.utils.data.Sampler[int]):
    def __init__(self, weights: Sequence[float], num_samples: int, seed: int, rank: int):
        w = np.asarray(weights, dtype=np.float64)
        if len(w) == 0 or not np.all(w >= 0) or w.sum() <= 0:
            raise ValueError("need at least one window with a positive weight")
        self.p = w / w.sum()
        self.num_samples, self.seed, self.rank = num_samples, seed, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        return iter(rng.choice(len(self.p), size=self.num_samples, p=self.p).tolist())
