"""Validation: the model and the baseline nowcasts scored on the same windows and cells.

Each worker scores its share of the validation windows (unaugmented, whole domains or centred
crops); the accumulators merge across workers. Every method gets the same input frames, with
unknown cells unknown (NaN), and the same motion prior. Baselines do not change during a run:
they are scored once, and the cells every method is scored on (observed, and valued by every
baseline: nothing advected in from outside coverage) are remembered per window, so that every
method is scored on exactly the same cells at every validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from motionrnn import MotionRNN
from pipelines.config import TrainingConfig
from pipelines.nowcast import VALIDATION, get_method
from pipelines.registry import PROMOTION_BASELINE, PROMOTION_THRESHOLD_MM_H
from pipelines.scoring.bootstrap import event_counts, paired_bootstrap
from pipelines.scoring.scores import Scores, ScoreSpec
from pipelines.training.dataset import Sample, WindowDataset

MODEL = "model"
PAIRED = "paired"  # the model's summary: its paired bootstrap against PROMOTION_BASELINE
NOT_METRICS = ("per_lead", "val_loss", PAIRED)  # the keys of a summary that are no pooled score


def model_inputs(batch: Sample, frames_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's inputs from a batch of samples: the input frames (B, T_in, 1, H, W), the
    coverage of the last one (B, 1, H, W) and the motion prior (B, 2, H, W)."""
    return batch.frames[:, :frames_in], batch.seen[:, frames_in - 1].float(), batch.motion


def score_spec(cfg: TrainingConfig) -> ScoreSpec:
    return ScoreSpec(
        cfg.data.frames_out,
        tuple(cfg.thresholds_mm_h),
        tuple(cfg.fss_thresholds_mm_h),
        tuple(cfg.fss_scales),
    )


@dataclass
class Evaluation:
    scores: dict[str, Scores]  # by method: "model" and each baseline
    loss_sum: float  # squared error on the model scale over seen cells (the validation loss)
    loss_n: float
    counts: dict[str, np.ndarray]  # by method: (windows, leads, 3) events at the promotion
    # threshold of each window of the dataset, zero for windows another worker scores

    def vector(self) -> np.ndarray:
        parts = [s.vector() for s in self.scores.values()]
        counts = [c.ravel() for c in self.counts.values()]
        return np.concatenate([*parts, *counts, [self.loss_sum, self.loss_n]])

    def from_vector(self, values: np.ndarray) -> Evaluation:
        scores, counts, offset = {}, {}, 0
        for k, s in self.scores.items():
            size = s.vector().size
            scores[k] = s.from_vector(values[offset : offset + size])
            offset += size
        for k, c in self.counts.items():
            counts[k] = values[offset : offset + c.size].reshape(c.shape)
            offset += c.size
        return Evaluation(scores, float(values[offset]), float(values[offset + 1]), counts)

    def merge(self, other: Evaluation) -> Evaluation:
        return Evaluation(
            {k: s.merge(other.scores[k]) for k, s in self.scores.items()},
            self.loss_sum + other.loss_sum,
            self.loss_n + other.loss_n,
            {k: c + other.counts[k] for k, c in self.counts.items()},
        )

    def summary(self) -> dict[str, dict]:
        out = {k: s.summary() for k, s in self.scores.items()}
        out[MODEL]["val_loss"] = self.loss_sum / self.loss_n if self.loss_n else None
        if PROMOTION_BASELINE in self.counts:
            out[MODEL][PAIRED] = {
                "baseline": PROMOTION_BASELINE,
                "threshold_mm_h": PROMOTION_THRESHOLD_MM_H,
                **paired_bootstrap(self.counts[MODEL], self.counts[PROMOTION_BASELINE]),
            }
        return out


HEADLINE = {  # the pooled metrics a terminal shows: their short names (mm/h; FSS at 10 cells)
    "csi_1mm": "CSI 1",
    "csi_5mm": "CSI 5",
    "csi_10mm": "CSI 10",
    "fss_1mm_10": "FSS 1",
    "fss_5mm_10": "FSS 5",
    "bias_1mm": "bias 1",
    "mae": "MAE",
}


def validation_table(
    validation: dict[str, dict], metrics: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """The pooled ``metrics`` of a validation summary (default: every one), as column names,
    and one row per method (its name, then each metric to 3 decimals, '-' where undefined)."""
    metrics = list(metrics or (k for k in validation[MODEL] if k not in NOT_METRICS))
    rows = [
        [method, *("-" if scores.get(m) is None else f"{scores[m]:.3f}" for m in metrics)]
        for method, scores in validation.items()
    ]
    return metrics, rows


class Validator:
    def __init__(
        self,
        dataset: WindowDataset,
        indices: Sequence[int],
        cfg: TrainingConfig,
        batch_size: int,
        methods: Sequence[str] | None = None,
    ):
        self.dataset, self.indices, self.batch_size = dataset, list(indices), batch_size
        self.transform = dataset.transform
        self.frames_in, self.leads = dataset.cfg.frames_in, dataset.cfg.frames_out
        self.spec = score_spec(cfg)
        self.methods = list(methods) if methods is not None else list(VALIDATION)
        self._baselines: dict[str, Scores] | None = None
        self._baseline_counts: dict[str, np.ndarray] = {}
        self._cells: dict[int, np.ndarray] = {}  # window -> cells scored (T_out, H, W)

    def _counts(self) -> np.ndarray:
        """Zero per-window counts (windows of the dataset, leads, 3)."""
        return np.zeros((len(self.dataset), self.leads, 3))

    def rates(self, sample: Sample) -> np.ndarray:
        """(T, H, W) mm/h of a sample, NaN where unknown."""
        rates = self.transform.inverse(sample.frames[:, 0].numpy())
        return np.where(sample.seen[:, 0].numpy(), rates, np.nan)

    def _score_baselines(self, i: int, rates: np.ndarray, velocity: np.ndarray) -> None:
        """Score every baseline on window i's rates (``rates``), keep the cells scored."""
        inputs, observed = rates[: self.frames_in], rates[self.frames_in :]
        forecasts = {
            name: get_method(name)(inputs, self.leads, velocity)[0] for name in self.methods
        }
        cells = np.isfinite(observed)
        for f in forecasts.values():
            cells &= np.isfinite(f)
        self._cells[i] = cells
        for name, f in forecasts.items():
            self._baselines[name].add(f, observed, cells)
            self._baseline_counts[name][i] = event_counts(
                f, observed, cells, PROMOTION_THRESHOLD_MM_H
            )

    def _batches(self) -> list[list[int]]:
        """Consecutive windows of one domain (frames of one size), batch_size at most."""
        out: list[list[int]] = []
        for i in self.indices:
            domain = self.dataset.windows[i].domain
            if (
                out
                and len(out[-1]) < self.batch_size
                and self.dataset.windows[out[-1][0]].domain == domain
            ):
                out[-1].append(i)
            else:
                out.append([i])
        return out

    def run(self, model: MotionRNN, device: torch.device, amp: bool) -> Evaluation:
        """Score ``model`` (and, the first time, the baselines) on this worker's windows."""
        first = self._baselines is None
        if first:
            self._baselines = {n: Scores(self.spec) for n in self.methods}
            self._baseline_counts = {n: self._counts() for n in self.methods}
        scores, counts = Scores(self.spec), self._counts()
        loss_sum = loss_n = 0.0
        model.eval()
        for batch in self._batches():
            items = [self.dataset[i] for i in batch]
            stacked = Sample(*(torch.stack(parts).to(device) for parts in zip(*items, strict=True)))
            inputs, coverage, motion = model_inputs(stacked, self.frames_in)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                seen = stacked.seen[:, : self.frames_in].float()
                out = model.generate(inputs, self.leads, coverage, motion, seen)
            out = out.float().clamp(0.0, 1.0).cpu()
            for k, (i, sample) in enumerate(zip(batch, items, strict=True)):
                y, seen = sample.frames[self.frames_in :], sample.seen[self.frames_in :]
                loss_sum += float(((out[k] - y) ** 2)[seen].sum())
                loss_n += float(seen.sum())
                rates = self.rates(sample)
                if first:
                    self._score_baselines(i, rates, sample.motion.numpy())
                forecast = self.transform.inverse(out[k, :, 0].numpy())
                observed = rates[self.frames_in :]
                scores.add(forecast, observed, self._cells[i])
                counts[i] = event_counts(
                    forecast, observed, self._cells[i], PROMOTION_THRESHOLD_MM_H
                )
        model.train()
        return Evaluation(
            {MODEL: scores, **self._baselines},
            loss_sum,
            loss_n,
            {MODEL: counts, **self._baseline_counts},
        )
