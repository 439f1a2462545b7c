"""Several models and the baselines scored on the same windows and cells, outside a run: what
promotion compares when two versions were validated on different windows, and what
bench/skill.py reports on the held-out test windows."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch

from motionrnn import MotionRNN
from pipelines.config import ObjectStorageConfig, TrainingConfig
from pipelines.scoring.scores import Scores
from pipelines.training.dataset import WindowDataset
from pipelines.training.validation import MODEL, Validator
from pipelines.training.windows import Window

log = logging.getLogger(__name__)


def score_models(
    store: str,
    windows: list[Window],
    models: dict[str, MotionRNN],
    cfg: TrainingConfig,
    snapshot: str | None = None,
    baselines: Sequence[str] | None = None,
    storage: ObjectStorageConfig | None = None,
    counts: dict[str, np.ndarray] | None = None,
) -> dict[str, Scores]:
    """Scores by name: each model's and each baseline's, every one on the same windows (whole
    domains, as validation scores them) and the same cells; they merge with other windows'.
    ``counts``, when given, gets each method's per-window events at the promotion threshold
    (windows, leads, 3), for ``pipelines.scoring.bootstrap.paired_bootstrap``."""
    if not windows:
        raise ValueError("no windows to score on")
    data = WindowDataset(
        store,
        windows,
        cfg.data,
        augment=False,
        snapshot=snapshot,
        storage=storage,
        whole_domain_multiple=cfg.model.patch,
    )
    validator = Validator(data, range(len(windows)), cfg, batch_size=1, methods=baselines)
    torch.set_num_threads(os.cpu_count() or 1)
    out: dict[str, Scores] = {}
    for name, model in models.items():
        log.info("scoring %s on %d windows", name, len(windows))
        evaluation = validator.run(model, torch.device("cpu"), amp=False)
        out[name] = evaluation.scores[MODEL]
        out.update({k: s for k, s in evaluation.scores.items() if k != MODEL})
        if counts is not None:
            counts[name] = evaluation.counts[MODEL]
            counts.update({k: c for k, c in evaluation.counts.items() if k != MODEL})
    return out
