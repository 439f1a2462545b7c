"""The deformable warp against a literal re-computation of the reference code's algorithm."""

import math

import pytest
import torch
import torch.nn.functional as F

from motionrnn.layers import Warp, deformable_sample


def loop_samples(e: torch.Tensor, offsets: torch.Tensor, k: int) -> torch.Tensor:
    """The reference algorithm in plain Python: pad E by 1, clamp each sampling point to the
    padded map, read it by bilinear interpolation.

    e: (c, h, w), offsets: (2 k^2, h, w) -> (c, k^2, h, w)."""
    c, h, w = e.shape
    n_pts, r = k * k, (k - 1) // 2
    padded = torch.zeros(c, h + 2, w + 2, dtype=torch.float64)
    padded[:, 1:-1, 1:-1] = e.double()
    out = torch.zeros(c, n_pts, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            for n in range(n_pts):
                ky, kx = divmod(n, k)
                py = i + 1 + ky - r + float(offsets[n, i, j])
                px = j + 1 + kx - r + float(offsets[n_pts + n, i, j])
                py, px = min(max(py, 0.0), h + 1.0), min(max(px, 0.0), w + 1.0)
                y0, x0 = math.floor(py), math.floor(px)
                y1, x1 = min(y0 + 1, h + 1), min(x0 + 1, w + 1)
                wy, wx = py - y0, px - x0
                out[:, n, i, j] = (
                    (1 - wy) * (1 - wx) * padded[:, y0, x0]
                    + (1 - wy) * wx * padded[:, y0, x1]
                    + wy * (1 - wx) * padded[:, y1, x0]
                    + wy * wx * padded[:, y1, x1]
                )
    return out


@pytest.mark.parametrize("k", [3, 5])
def test_samples_match_loops(k: int) -> None:
    gen = torch.Generator().manual_seed(0)
    e = torch.randn(2, 3, 4, 5, generator=gen)
    # offsets up to +-2.5 px: many points between pixels, some off the map
    offsets = (torch.rand(2, 2 * k * k, 4, 5, generator=gen) - 0.5) * 5
    got = deformable_sample(e, offsets, k)
    assert got.shape == (2, 3, k * k, 4, 5)
    for b in range(2):
        want = loop_samples(e[b], offsets[b], k)
        torch.testing.assert_close(got[b].double(), want, atol=1e-5, rtol=1e-5)
    assert (want == 0).any() and want.abs().sum() > 0  # some samples fell outside, not all


def test_integer_offsets_shift_the_map() -> None:
    e = torch.arange(20.0).view(1, 1, 4, 5)
    offsets = torch.zeros(1, 18, 4, 5)
    offsets[:, 9:] = 1.0  # every point reads one column to the right
    centre = deformable_sample(e, offsets, 3)[0, 0, 4]  # neighbour n = 4 is pn = (0, 0)
    want = torch.cat([e[0, 0, :, 1:], torch.zeros(4, 1)], dim=1)
    torch.testing.assert_close(centre, want)


def test_warp_with_mask_and_combination_matches_loops() -> None:
    gen = torch.Generator().manual_seed(1)
    warp = Warp(channels=3, k=3)
    with torch.no_grad():
        warp.mask.weight.normal_(generator=gen)  # a non-trivial mask
    e = torch.randn(1, 3, 4, 6, generator=gen)
    offsets = torch.randn(1, 18, 4, 6, generator=gen)
    samples = loop_samples(e[0], offsets[0], 3)  # (c, 9, h, w)
    mask = torch.sigmoid(warp.mask(e))[0].double()  # (9, h, w)
    # the reference layout: sample n = 3 ky + kx of point (i, j) at (3 i + ky, 3 j + kx)
    layout = (samples * mask).view(3, 3, 3, 4, 6).permute(0, 3, 1, 4, 2).reshape(1, 3, 12, 18)
    want = F.conv2d(layout, warp.combine.weight.double(), stride=3)
    torch.testing.assert_close(warp(e, offsets).double(), want, atol=1e-5, rtol=1e-5)


def test_zero_offsets_and_unit_mask_is_a_plain_convolution() -> None:
    warp = Warp(channels=4, k=3)
    with torch.no_grad():
        warp.mask.bias.fill_(100.0)  # sigmoid(100) == 1 in float32
    e = torch.randn(2, 4, 7, 5)
    got = warp(e, torch.zeros(2, 18, 7, 5))
    want = F.conv2d(e, warp.combine.weight, padding=1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
