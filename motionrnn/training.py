"""Training helpers: the next-frame loss, the motion smoothness and the optimiser groups."""

from __future__ import annotations

import torch

from motionrnn.model import MotionRNN


def next_frame_loss(
    predictions: torch.Tensor,
    frames: torch.Tensor,
    seen: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    mse: float = 1.0,
    mae: float = 0.0,
) -> torch.Tensor:
    """Error of ``MotionRNN.forward``'s next-frame predictions x^_1 .. x^_{T-1} (B, T-1, ...)
    against frames x_1 .. x_{T-1} of ``frames`` (B, T, ...), over the cells where ``seen``
    (B, T, ...) is True (all without it):

        sum_seen w (mse e^2 + mae |e|) / number of seen cells

    with per-cell weights w (B, T, ...) (1 without them; ``intensity_weights`` for the balanced
    B-MSE / B-MAE). Unseen cells add nothing and do not dilute the mean."""
    target = frames[:, 1:]
    error = predictions - target
    per_cell = mse * error**2 + mae * error.abs()
    if weights is not None:
        per_cell = per_cell * weights[:, 1:]
    if seen is None:
        return per_cell.mean()
    mask = seen[:, 1:].to(per_cell.dtype)
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
    observed = (frames[:, 1:, None] > levels).to(forecast.dtype)
    mask = 1.0 if seen is None else seen[:, 1:, None].to(forecast.dtype)
    dims = [d for d in range(forecast.dim()) if d != 2]
    hits = (forecast * observed * mask).sum(dims)
    total = ((forecast + observed) * mask).sum(dims)
    return (1 - hits / (total - hits).clamp(min=1e-6)).mean()


def motion_smoothness(motion: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring vectors of (..., 2, h, w) motion fields."""
    dy = motion[..., 1:, :] - motion[..., :-1, :]
    dx = motion[..., :, 1:] - motion[..., :, :-1]
    return (dy**2).mean() + (dx**2).mean()


def parameter_groups(
    model: MotionRNN, lr: float, offset_lr_scale: float = 0.1
) -> list[dict[str, object]]:
    """Optimiser groups: the MotionGRU offset and mask gates learn at lr * offset_lr_scale.

    The reference code meant to slow the learning of the motion offsets by scaling their
    gradients by 0.1 in backward hooks, which have no effect (and gradient scaling would do little
    under Adam anyway); a learning-rate scale does what was meant. offset_lr_scale=1.0 is what the
    reference code effectively trained with.
    """
    slow, rest = [], []
    for name, param in model.named_parameters():
        is_gate = any(f".{g}." in name for g in ("update_reset", "candidate", "mask"))
        (slow if name.startswith("motion_grus.") and is_gate else rest).append(param)
    return [{"params": rest, "lr": lr}, {"params": slow, "lr": lr * offset_lr_scale}]
