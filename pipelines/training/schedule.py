"""Where a run stands in its budget, and what follows from it: the learning rate and the
teacher-forcing probabilities. Both follow the share of the budget spent (``progress``), so a
run stopped by its step budget or by its time budget goes through the same schedules."""

from __future__ import annotations

import math

from motionrnn import TeacherProbabilities, reverse_scheduled_sampling, scheduled_sampling
from pipelines.config import OptimiserConfig, SamplingConfig


def progress(step: int, elapsed_s: float, max_steps: int, max_minutes: float | None) -> float:
    """Share of the budget spent: the larger of the step and the time shares (1: done)."""
    share = step / max_steps
    if max_minutes is not None:
        share = max(share, elapsed_s / (60.0 * max_minutes))
    return share


def lr_factor(p: float, cfg: OptimiserConfig, warm_up: bool = True) -> float:
    """Linear warm-up to 1 over warmup_fraction, then cosine decay to min_lr_fraction; without
    ``warm_up`` (fine-tuning) the cosine spans the whole budget from 1."""
    warmup = cfg.warmup_fraction if warm_up else 0.0
    if p < warmup:
        return (p + 1e-3) / (warmup + 1e-3)
    span = max(1e-9, 1.0 - warmup)
    t = min(1.0, (p - warmup) / span)
    return cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t))


def teacher_probabilities(p: float, cfg: SamplingConfig) -> TeacherProbabilities | None:
    """Probabilities of feeding true frames at progress p; None: no teacher forcing."""
    if cfg.method == "none" or p >= cfg.end:
        return None if cfg.method == "none" else TeacherProbabilities(1.0, 0.0)
    if cfg.method == "scheduled":
        return scheduled_sampling(p, start=1.0, rate=1.0 / cfg.end)
    width = max(1e-9, cfg.end - cfg.start)
    return reverse_scheduled_sampling(p, step_1=cfg.start, step_2=cfg.end, exp_alpha=width / 5.0)
