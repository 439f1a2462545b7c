"""Differentiable semi-Lagrangian advection on the pixel grid (NowcastNet's evolution operator,
integrated the way pysteps' ``extrapolation.semilagrangian`` integrates it).

Motion fields are (B, 2, H, W) in pixels per time step, x (columns) first, as pysteps has them.
A forecast keeps the displacement D back to its reference frame and samples that frame once at
x + D (instead of warping the previous forecast again at every step, which would blur it a
little more each time). Each step moves D back along the motion v with the midpoint rule:

    v0 = v(x + D),   v_mid = v(x + D - v0 / 2),   D <- D - v_mid

which is pysteps' scheme (``n_iter=1``) for a motion that does not change; ours may change at
every step. Motion is read with border padding (pysteps: ``mode="nearest"``), frames with zeros
outside the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample(field: torch.Tensor, displacement: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """field (B, c, H, W) read bilinearly at each pixel + displacement (B, 2, H, W)."""
    _, _, height, width = field.shape
    dtype, device = displacement.dtype, displacement.device
    cols = torch.arange(width, device=device, dtype=dtype).view(1, 1, width)
    rows = torch.arange(height, device=device, dtype=dtype).view(1, height, 1)
    x = cols + displacement[:, 0]  # (B, H, W)
    y = rows + displacement[:, 1]
    # grid_sample's normalised coordinates (align_corners=False): pixel i's centre lies at
    # (2 i + 1) / size - 1
    grid = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], dim=-1)
    return F.grid_sample(
        field, grid.to(field.dtype), mode="bilinear", padding_mode=padding, align_corners=False
    )


def trace_back(displacement: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """One time step further back along ``velocity`` (midpoint rule): the new displacement."""
    v0 = sample(velocity, displacement, padding="border")
    v_mid = sample(velocity, displacement - v0 / 2, padding="border")
    return displacement - v_mid
