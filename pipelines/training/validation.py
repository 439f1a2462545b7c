"""Validation: the model and the baseline nowcasts scored on the same windows and cells.

Each worker scores its share of the validation windows (unaugmented, centred crops); the sums
add up across workers. Baselines do not change during a run: they are scored once, and the
cells where a baseline has no value (advected in from outside the crop) are remembered per
window, so that every method is scored on exactly the same cells at every validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from motionrnn import MotionRNN
from pipelines import baselines
from pipelines.scores import ScoreSums
from pipelines.training.dataset import WindowDataset

MODEL = "model"


@dataclass
class Evaluation:
    scores: dict[str, ScoreSums]  # by method: "model" and each baseline
    loss_sum: float  # squared error on the model scale over seen cells (the validation loss)
    loss_n: float

    def vector(self) -> np.ndarray:
        parts = [s.vector() for s in self.scores.values()]
        return np.concatenate([*parts, [self.loss_sum, self.loss_n]])

    def from_vector(self, values: np.ndarray) -> Evaluation:
        scores, offset = {}, 0
        for k in self.scores:
            size = self.scores[k].vector().size
            scores[k] = self.scores[k].from_vector(values[offset : offset + size])
            offset += size
        return Evaluation(scores, float(values[offset]), float(values[offset + 1]))

    def summary(self) -> dict[str, dict]:
        out = {k: s.summary() for k, s in self.scores.items()}
        out[MODEL]["val_loss"] = self.loss_sum / self.loss_n if self.loss_n else None
        return out


def score_table(validation: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """The pooled metrics of a validation summary (column names) and one row per method
    (its name, then each metric to 3 decimals, '-' where undefined): for tables and reports."""
    metrics = [k for k in validation[MODEL] if k not in ("per_lead", "val_loss")]
    rows = [
        [method, *("-" if scores[m] is None else f"{scores[m]:.3f}" for m in metrics)]
        for method, scores in validation.items()
    ]
    return metrics, rows


class Validator:
    def __init__(
        self,
        dataset: WindowDataset,
        indices: Sequence[int],
        thresholds: Sequence[float],
        batch_size: int,
    ):
        self.dataset, self.indices, self.batch_size = dataset, list(indices), batch_size
        self.transform = dataset.transform
        self.leads, self.thresholds = dataset.cfg.frames_out, tuple(thresholds)
        self._baselines: dict[str, ScoreSums] | None = None
        self._cells: dict[int, np.ndarray] = {}  # window -> cells scored (T_out, c, c)

    def _score_baselines(self, i: int, frames: np.ndarray, observed: np.ndarray, seen: np.ndarray):
        forecasts = {
            name: baselines.get_method(name)(frames, self.leads) for name in baselines.names()
        }
        cells = seen.copy()
        for f in forecasts.values():
            cells &= np.isfinite(f)
        self._cells[i] = cells
        for name, f in forecasts.items():
            self._baselines[name].add(f, observed, cells)

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
            self._baselines = {n: ScoreSums(self.leads, self.thresholds) for n in baselines.names()}
        scores = ScoreSums(self.leads, self.thresholds)
        loss_sum = loss_n = 0.0
        model.eval()
        for batch in self._batches():
            items = [self.dataset[i] for i in batch]
            inputs = torch.stack([x for x, _, _ in items]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model.generate(inputs)
            out = out.float().clamp(0.0, 1.0).cpu()
            for k, (i, (x, y, seen)) in enumerate(zip(batch, items, strict=True)):
                seen_np = seen[:, 0].numpy()
                loss_sum += float(((out[k] - y) ** 2)[seen].sum())
                loss_n += float(seen.sum())
                observed = self.transform.inverse(y[:, 0].numpy())
                if first:
                    self._score_baselines(
                        i, self.transform.inverse(x[:, 0].numpy()), observed, seen_np
                    )
                forecast = self.transform.inverse(out[k, :, 0].numpy())
                scores.add(forecast, observed, self._cells[i])
        model.train()
        return Evaluation({MODEL: scores, **self._baselines}, loss_sum, loss_n)
