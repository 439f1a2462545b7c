"""The MotionGRU warp: a modulated deformable k x k sampling of the encoded features.

For every point p0 of the (half-resolution) map E and every point pn of the k x k neighbourhood
(row-major, pn in {-(k-1)/2 .. (k-1)/2}^2), E is read by bilinear interpolation at
p0 + pn + F_n(p0), zero outside the map, multiplied by a mask m_n(p0) = sigmoid(W_m * E), and the
k^2 samples of each point are combined by a k x k kernel W:

    Warp(E, F)(p0) = sum_n W_n . m_n(p0) . E(p0 + pn + F_n(p0))

This is the official code's operation (pad E by 1, clamp to the padded map, lay the samples out as
a (k h, k w) map, Conv2d(kernel k, stride k)): reading outside the map there lands on the zero
padding. torchvision's ``deform_conv2d`` with a mask computes the same operation (with its own
offset layout). With F = 0 and m = 1 it is a plain k x k convolution of E with zero padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def neighbourhood(k: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(k^2, 2) row and column displacements pn of a k x k neighbourhood, row-major."""
    r = torch.arange(k, device=device, dtype=dtype) - (k - 1) / 2
    rows, cols = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=-1)


def deformable_sample(features: torch.Tensor, offsets: torch.Tensor, k: int) -> torch.Tensor:
    """Bilinear samples of ``features`` at the k^2 displaced neighbours of every point.

    features: (B, c, h, w); offsets: (B, 2 k^2, h, w), the first k^2 channels row offsets and the
    next k^2 column offsets, in pixels. Returns (B, c, k^2, h, w): sample n of point (i, j) is
    features at (i + pn_row + offsets[n], j + pn_col + offsets[k^2 + n]), zero outside the map.
    """
    b, _, h, w = features.shape
    n, dtype = k * k, features.dtype
    # positions in float32 whatever the autocast dtype: bf16 resolves only 0.25 px at 64
    features, offsets = features.float(), offsets.float().view(b, 2, n, h, w)
    pn = neighbourhood(k, features.device, torch.float32)  # (N, 2)
    rows = torch.arange(h, device=features.device, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=features.device, dtype=torch.float32).view(1, 1, w)
    y = rows + pn[:, 0].view(n, 1, 1) + offsets[:, 0]  # (B, N, h, w) sampling rows
    x = cols + pn[:, 1].view(n, 1, 1) + offsets[:, 1]  # (B, N, h, w) sampling columns
    # grid_sample's normalised coordinates (align_corners=False): pixel i's centre is at
    # (2 i + 1) / size - 1, so that -1 and 1 are the outer edges of the map
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1)
    samples = F.grid_sample(
        features,
        grid.view(b, n * h, w, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # (B, c, N h, w)
    return samples.view(b, -1, n, h, w).to(dtype)


class Warp(nn.Module):
    """Modulated deformable sampling of E along the motion filter F (see the module docstring)."""

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.mask = nn.Conv2d(channels, k * k, kernel_size=3, padding=1)
        nn.init.zeros_(self.mask.weight)  # as the reference: m = sigmoid(bias) at start
        # W: the official Conv2d(kernel k, stride k) over the (k h, k w) sample layout
        self.combine = nn.Conv2d(channels, channels, kernel_size=k, stride=k, bias=False)

    def forward(self, e: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """e: (B, c, h, w), flow: (B, 2 k^2, h, w) -> (B, c, h, w)."""
        m = torch.sigmoid(self.mask(e))  # (B, N, h, w)
        samples = deformable_sample(e, flow, self.k) * m.unsqueeze(1)  # (B, c, N, h, w)
        # stride-k convolution of the (k h, k w) layout == 1 x 1 convolution over (c, N) channels
        weight = self.combine.weight.flatten(1)[:, :, None, None]  # (c, c N, 1, 1)
        return F.conv2d(samples.flatten(1, 2), weight)
