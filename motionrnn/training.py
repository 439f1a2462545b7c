"""Training helpers: the next-frame loss, the motion smoothness and the optimiser groups."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from motionrnn.model import MotionRNN


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
