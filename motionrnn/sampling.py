"""Scheduled sampling (PredRNN) and reverse scheduled sampling (PredRNN-V2) for training.

A schedule gives, for a training iteration, the probability of feeding the true frame rather than
the model's own prediction: ``observed`` for the steps that consume input frames (t = 1 .. T_in-1)
and ``forecast`` for the steps that consume future frames (t = T_in .. T_in + T_out - 2).
``teacher_mask`` draws the per-sample mask that ``MotionRNN.forward(teacher=...)`` takes.
The iteration may be any monotone measure of training progress (a share of a budget, with the
step arguments in the same unit).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class TeacherProbabilities(NamedTuple):
    observed: float  # P(true frame) at steps consuming input frames
    forecast: float  # P(true frame) at steps consuming future frames


def scheduled_sampling(
    iteration: float, start: float = 1.0, rate: float = 2e-5
) -> TeacherProbabilities:
    """PredRNN: always the true inputs; eta = start - rate * iteration, down to 0, afterwards.

    The defaults are the reference recipe's: 1.0 down by 2e-5 per iteration, 0 from 50,000 on.
    """
    return TeacherProbabilities(1.0, max(0.0, start - rate * iteration))


def reverse_scheduled_sampling(
    iteration: float, step_1: float = 25_000, step_2: float = 50_000, exp_alpha: float = 5_000.0
) -> TeacherProbabilities:
    """PredRNN-V2: the input steps see more and more true frames (0.5 -> 1, exponentially),
    the forecast steps fewer and fewer (0.5 -> 0, linearly), between step_1 and step_2."""
    if iteration < step_1:
        return TeacherProbabilities(0.5, 0.5)
    if iteration < step_2:
        observed = 1.0 - 0.5 * math.exp(-(iteration - step_1) / exp_alpha)
        forecast = 0.5 - 0.5 * (iteration - step_1) / (step_2 - step_1)
        return TeacherProbabilities(observed, forecast)
    return TeacherProbabilities(1.0, 0.0)


def teacher_mask(
    probabilities: TeacherProbabilities,
    batch: int,
    frames_in: int,
    frames_out: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(batch, frames_in + frames_out - 2) Bernoulli draws: 1 feeds the true frame at that step."""
    p = torch.tensor(
        [probabilities.observed] * (frames_in - 1) + [probabilities.forecast] * (frames_out - 1)
    )
    draws = torch.rand(batch, p.numel(), generator=generator) < p
    return draws.float().to(device)
