"""Training helpers: the next-frame loss and the optimiser parameter groups."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionrnn.model import MotionRNN


def next_frame_loss(
    predictions: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """MSE of ``MotionRNN.forward``'s next-frame outputs x^_1 .. x^_{T-1} against x_1 .. x_{T-1},
    the frames being inputs (B, T_in, ...) followed by targets (B, T_out, ...)."""
    return F.mse_loss(predictions, torch.cat([inputs, targets], dim=1)[:, 1:])


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
