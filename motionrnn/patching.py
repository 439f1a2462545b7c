"""Space-to-depth patching of frames (the official code's ``reshape_patch``, as a pixel shuffle)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_patches(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """(..., c, H, W) -> (..., c p^2, H/p, W/p); H and W must be divisible by p."""
    height, width = frames.shape[-2:]
    if height % patch or width % patch:
        raise ValueError(f"frame size {height} x {width} is not divisible by the patch {patch}")
    return F.pixel_unshuffle(frames, patch)


def from_patches(patches: torch.Tensor, patch: int) -> torch.Tensor:
    """(..., c p^2, h, w) -> (..., c, h p, w p); the inverse of ``to_patches``."""
    return F.pixel_shuffle(patches, patch)
