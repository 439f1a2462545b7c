"""Training helpers: the losses, the motion smoothness, the optimiser groups, and scheduled
sampling (PredRNN) and reverse scheduled sampling (PredRNN-V2).

A sampling schedule gives, for a training iteration, the probability of feeding the true frame
rather than the model's own prediction: ``observed`` for the steps that consume input frames
(t = 1 .. T_in-1) and ``forecast`` for the steps that consume future frames (t = T_in .. T_in +
T_out - 2).
``teacher_mask`` draws the per-sample mask that ``MotionRNN.forward(teacher=...)`` takes.
The iteration may be any monotone measure of training progress (a share of a budget, with the
step arguments in the same unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from motionrnn.model import MotionRNN


# ---- losses and parameter groups ----------------------------------------------------------------
def next_frame_loss(
    predictions: torch.Tensor,
    frames: torch.Tensor,
    seen: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    mse: float = 1.0,
    mae: float = 0.0,
    start: int = 1,
) -> torch.Tensor:
    """Error of ``MotionRNN.forward``'s predictions x^_start .. x^_{T-1} (B, T - start, ...)
    against frames x_start .. x_{T-1} of ``frames`` (B, T, ...) (``Prediction.start``: 1 for
    next-frame predictions, T_in for the leads only), over the cells where ``seen``
    (B, T, ...) is True (all without it):

        sum_seen w (mse e^2 + mae |e|) / number of seen cells

    with per-cell weights w (B, T, ...) (1 without them; ``intensity_weights`` for the balanced
    B-MSE / B-MAE). Unseen cells add nothing and do not dilute the mean."""
    target = frames[:, start:]
    error = predictions - target
    per_cell = mse * error**2 + mae * error.abs()
    if weights is not None:
        per_cell = per_cell * weights[:, start:]
    if seen is None:
        return per_cell.mean()
    mask = seen[:, start:].to(per_cell.dtype)
    return (per_cell * mask).sum() / mask.sum().clamp(min=1.0)


def intensity_weights(
    frames: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Per-cell weights by value class: weights[i] for edges[i-1] <= value < edges[i]
    (``edges`` increasing, on the frames' scale; ``weights`` one longer)."""
    return weights[torch.bucketize(frames, edges, right=True)]


def event_loss(
    predictions: torch.Tensor,
    frames: torch.Tensor,
    thresholds: torch.Tensor,
    softness: float,
    seen: torch.Tensor | None = None,
    start: int = 1,
) -> torch.Tensor:
    """1 - soft CSI of the events "value > threshold", averaged over ``thresholds`` (on the
    frames' scale), for the same predictions and frames as ``next_frame_loss``:

        p = sigmoid((x^ - threshold) / softness)        forecast event, soft
        o = [x > threshold]                             observed event
        CSI = sum p o / (sum p + sum o - sum p o)       hits / (hits + misses + false alarms)

    over the seen cells of the whole batch (pooled, as the score). A squared error pulls an
    uncertain cell to the mean of dry and wet, below the event threshold: rain areas shrink
    with the lead time; this term pays for the events themselves."""
    levels = thresholds.view(1, 1, -1, *([1] * (predictions.dim() - 2)))  # (1, 1, K, 1, ...)
    forecast = torch.sigmoid((predictions[:, :, None] - levels) / softness)
    observed = (frames[:, start:, None] > levels).to(forecast.dtype)
    mask = 1.0 if seen is None else seen[:, start:, None].to(forecast.dtype)
    dims = [d for d in range(forecast.dim()) if d != 2]
    hits = (forecast * observed * mask).sum(dims)
    total = ((forecast + observed) * mask).sum(dims)
    return (1 - hits / (total - hits).clamp(min=1e-6)).mean()


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of (N, 1, H, W) x over the ``window`` x ``window`` square around each cell, zeros
    beyond the edges (``F.avg_pool2d(x, window, 1, window // 2)``). Separable: a row then a
    column pass, 2 w additions a cell instead of w^2 (the square pool was half the time of a
    prior-stage step on whole domains; bench/RESULTS.md)."""
    half = window // 2
    rows = F.avg_pool2d(x, (1, window), stride=1, padding=(0, half))
    return F.avg_pool2d(rows, (window, 1), stride=1, padding=(half, 0))


def fss_loss(
    predictions: torch.Tensor,
    frames: torch.Tensor,
    thresholds: Sequence[float],
    softness: float,
    window: int,
    seen: torch.Tensor | None = None,
    start: int = 1,
) -> torch.Tensor:
    """1 - fractions skill score of the events "value > threshold" in ``window`` x ``window``
    neighbourhoods (Roberts and Lean 2008), averaged over ``thresholds``, for predictions
    (B, T - start, 1, H, W) of frames (B, T, 1, H, W) (as ``next_frame_loss``); the forecast
    event soft (sigmoid of (x^ - threshold) / softness), as Lagerquist and Ebert-Uphoff (2022):

        f = mean over the window of the forecast events, o = of the observed ones
        FSS = 1 - sum (f - o)^2 / (sum f^2 + sum o^2)       pooled over the batch and leads

    Unseen cells are no event in either field, as pysteps' FSS counts them."""
    mask = 1.0 if seen is None else seen[:, start:].to(predictions.dtype)
    target = frames[:, start:]
    losses = []
    for level in thresholds:
        forecast = torch.sigmoid((predictions - level) / softness) * mask
        observed = (target > level).to(predictions.dtype) * mask
        f, o = (box_mean(x.flatten(0, 2)[:, None], window) for x in (forecast, observed))
        losses.append(((f - o) ** 2).sum() / ((f**2).sum() + (o**2).sum()).clamp(min=1e-6))
    return torch.stack(losses).mean()


def motion_smoothness(motion: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring vectors of (..., 2, h, w) motion fields."""
    dy = motion[..., 1:, :] - motion[..., :-1, :]
    dx = motion[..., :, 1:] - motion[..., :, :-1]
    return (dy**2).mean() + (dx**2).mean()


def parameter_groups(
    model: MotionRNN, lr: float, offset_lr_scale: float = 0.1, prior_lr: float | None = None
) -> list[dict[str, object]]:
    """Optimiser groups: the MotionGRU offset and mask gates learn at lr * offset_lr_scale, the
    sprog prior's few parameters (if any) at ``prior_lr`` (lr without it).

    The reference code meant to slow the learning of the motion offsets by scaling their
    gradients by 0.1 in backward hooks, which have no effect (and gradient scaling would do little
    under Adam anyway); a learning-rate scale does what was meant. offset_lr_scale=1.0 is what the
    reference code effectively trained with.
    """
    slow, prior, rest = [], [], []
    for name, param in model.named_parameters():
        is_gate = any(f".{g}." in name for g in ("update_reset", "candidate", "mask"))
        if name.startswith("prior."):
            prior.append(param)
        else:
            (slow if name.startswith("motion_grus.") and is_gate else rest).append(param)
    groups = [{"params": rest, "lr": lr}, {"params": slow, "lr": lr * offset_lr_scale}]
    if prior:
        groups.append({"params": prior, "lr": lr if prior_lr is None else prior_lr})
    return groups


# ---- scheduled sampling -------------------------------------------------------------------------
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
