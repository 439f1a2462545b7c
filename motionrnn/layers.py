"""The model's building blocks: the recurrent cells with the Motion Highway, MotionGRU and its
deformable warp, space-to-depth patching, and semi-Lagrangian advection.

Cells (paper Sec. 3.1). Every cell has the call signature ``cell(x, h, c, m, highway) -> (h, c,
m)``: x is the input from below, (h, c) the cell's own hidden and cell state, m PredRNN's
spatiotemporal memory (ConvLSTM has none and passes it through) and highway the Motion Highway
input, or None for the plain base. The gate convolutions are fused: one convolution of the
concatenated inputs per memory produces all of that memory's gates (same parameters as the
reference's separate W_x*, W_h*, W_m*).

The MotionGRU warp: a modulated deformable k x k sampling of the encoded features. For every
point p0 of the (half-resolution) map E and every point pn of the k x k neighbourhood (row-major,
pn in {-(k-1)/2 .. (k-1)/2}^2), E is read by bilinear interpolation at p0 + pn + F_n(p0), zero
outside the map, multiplied by a mask m_n(p0) = sigmoid(W_m * E), and the k^2 samples of each
point are combined by a k x k kernel W:

    Warp(E, F)(p0) = sum_n W_n . m_n(p0) . E(p0 + pn + F_n(p0))

This is the official code's operation (pad E by 1, clamp to the padded map, lay the samples out as
a (k h, k w) map, Conv2d(kernel k, stride k)): reading outside the map there lands on the zero
padding. torchvision's ``deform_conv2d`` with a mask computes the same operation (with its own
offset layout). With F = 0 and m = 1 it is a plain k x k convolution of E with zero padding.

MotionGRU (paper Sec. 3.2): a motion-based state transition placed between stacked layers.

Patching: space-to-depth of frames (the official code's ``reshape_patch``, as a pixel shuffle).

Advection: differentiable semi-Lagrangian advection on the pixel grid (NowcastNet's evolution
operator, integrated the way pysteps' ``extrapolation.semilagrangian`` integrates it). Motion
fields are (B, 2, H, W) in pixels per time step, x (columns) first, as pysteps has them. A
forecast keeps the displacement D back to its reference frame and samples that frame once at
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
from torch import nn


# ---- recurrent cells with the Motion Highway ----------------------------------------------------
def highway_output(
    o: torch.Tensor, content: torch.Tensor, highway: torch.Tensor | None
) -> torch.Tensor:
    """H = o . content + (1 - o) . HW (Motion Highway), or o . content without a highway."""
    if highway is None:
        return o * content
    return o * content + (1 - o) * highway


class SpatioTemporalLSTMCell(nn.Module):
    """PredRNN's spatiotemporal LSTM (Wang et al. 2017) with the Motion Highway.

    i, f, g, o   = W_xh * [X, H_{t-1}]            (gate pre-activations)
    i', f', g'   = W_xm * [X, M]
    C_t  = sigmoid(f + b_f) . C_{t-1} + sigmoid(i) . tanh(g)
    M'   = sigmoid(f' + b_f) . M + sigmoid(i') . tanh(g')      M zig-zags through the stack
    o    = sigmoid(o + W_o * [C_t, M'])
    H_t  = o . tanh(W_1x1 * [C_t, M']) + (1 - o) . HW
    """

    def __init__(self, in_channels: int, hidden: int, filter_size: int, forget_bias: float) -> None:
        super().__init__()
        pad = filter_size // 2
        self.forget_bias = forget_bias
        self.gates_h = nn.Conv2d(
            in_channels + hidden, 4 * hidden, filter_size, padding=pad, bias=False
        )
        self.gates_m = nn.Conv2d(
            in_channels + hidden, 3 * hidden, filter_size, padding=pad, bias=False
        )
        self.gate_o = nn.Conv2d(2 * hidden, hidden, filter_size, padding=pad, bias=False)
        self.memory = nn.Conv2d(2 * hidden, hidden, kernel_size=1, bias=False)  # W_1x1

    def forward(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        m: torch.Tensor,
        highway: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i, f, g, o = self.gates_h(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        i_m, f_m, g_m = self.gates_m(torch.cat([x, m], dim=1)).chunk(3, dim=1)
        c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
        m = torch.sigmoid(f_m + self.forget_bias) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
        cm = torch.cat([c, m], dim=1)
        o = torch.sigmoid(o + self.gate_o(cm))
        return highway_output(o, torch.tanh(self.memory(cm)), highway), c, m


class ConvLSTMCell(nn.Module):
    """ConvLSTM (Shi et al. 2015) with the Motion Highway.

    i, f, g, o = W * [X, H_{t-1}]
    C_t = sigmoid(f + b_f) . C_{t-1} + sigmoid(i) . tanh(g)
    H_t = sigmoid(o) . tanh(C_t) + (1 - sigmoid(o)) . HW
    """

    def __init__(self, in_channels: int, hidden: int, filter_size: int, forget_bias: float) -> None:
        super().__init__()
        self.forget_bias = forget_bias
        self.gates = nn.Conv2d(
            in_channels + hidden, 4 * hidden, filter_size, padding=filter_size // 2, bias=False
        )

    def forward(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        m: None,
        highway: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
        return highway_output(torch.sigmoid(o), torch.tanh(c), highway), c, m


# ---- the MotionGRU warp -------------------------------------------------------------------------
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


# ---- MotionGRU ----------------------------------------------------------------------------------
class MotionGRU(nn.Module):
    """Learns per-point motion filters F and warps the hidden state along them.

    With H the layer's hidden state (B, C, h, w), E its encoding at half resolution with C/4
    channels, and F, D the motion filter and trend of the previous step (B, 2 k^2, h/2, w/2):

        E    = Enc(H)                                     stride-2 convolution
        u    = sigmoid(W_u * [E, F_{t-1}])                transient variation (Sec. 3.2.1),
        r    = sigmoid(W_r * [E, F_{t-1}])                a ConvGRU over motion filters
        z    = tanh(W_z * [E, r . F_{t-1}])
        F'   = u . z + (1 - u) . F_{t-1}
        D_t  = D_{t-1} + alpha (F_{t-1} - D_{t-1})        motion trend, a momentum (Sec. 3.2.2)
        F_t  = F' + D_t
        H'   = Dec(Warp(E, F_t))                          Sec. 3.2.3, see ``motionrnn.layers``
        g    = sigmoid(W_g * [H', H])
        X    = g . H' + (1 - g) . H                       replaces H in the stack and recurrence

    (The fusion is written as the reference code has it; the paper's g . H + (1 - g) . H' is the
    same with the gate's sign flipped.)

    The gate weights W_u, W_r, W_z start at zero as in the reference code; their biases do not,
    so F starts small and non-zero and the weights receive gradients from the first step.
    For an odd h (or w) Enc rounds up and Dec's output is cropped back to h.
    """

    def __init__(self, hidden: int, filter_size: int, neighbours: int, alpha: float) -> None:
        super().__init__()
        c = hidden // 4
        n2 = 2 * neighbours**2  # offset channels: a (row, column) pair per neighbour
        self.alpha = alpha
        self.enc = nn.Conv2d(hidden, c, filter_size, stride=2, padding=filter_size // 2)
        self.update_reset = nn.Conv2d(c + n2, 2 * n2, kernel_size=3, padding=1)  # [W_u; W_r]
        self.candidate = nn.Conv2d(c + n2, n2, kernel_size=3, padding=1)  # W_z
        nn.init.zeros_(self.update_reset.weight)
        nn.init.zeros_(self.candidate.weight)
        self.warp = Warp(c, neighbours)
        self.dec = nn.ConvTranspose2d(c, hidden, kernel_size=4, stride=2, padding=1)
        self.fuse = nn.Conv2d(2 * hidden, hidden, filter_size, padding=filter_size // 2)  # W_g

    def forward(
        self, h: torch.Tensor, flow: torch.Tensor, trend: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h: (B, C, h, w); flow, trend: (B, 2 k^2, ceil(h/2), ceil(w/2)) -> (X, F_t, D_t)."""
        e = self.enc(h)
        u, r = torch.sigmoid(self.update_reset(torch.cat([e, flow], dim=1))).chunk(2, dim=1)
        z = torch.tanh(self.candidate(torch.cat([e, r * flow], dim=1)))
        transient = u * z + (1 - u) * flow
        trend = trend + self.alpha * (flow - trend)
        flow = transient + trend
        warped = self.dec(self.warp(e, flow))[..., : h.shape[-2], : h.shape[-1]]
        g = torch.sigmoid(self.fuse(torch.cat([warped, h], dim=1)))
        return g * warped + (1 - g) * h, flow, trend


# ---- patching -----------------------------------------------------------------------------------
def to_patches(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """(..., c, H, W) -> (..., c p^2, H/p, W/p); H and W must be divisible by p."""
    height, width = frames.shape[-2:]
    if height % patch or width % patch:
        raise ValueError(f"frame size {height} x {width} is not divisible by the patch {patch}")
    return F.pixel_unshuffle(frames, patch)


def from_patches(patches: torch.Tensor, patch: int) -> torch.Tensor:
    """(..., c p^2, h, w) -> (..., c, h p, w p); the inverse of ``to_patches``."""
    return F.pixel_shuffle(patches, patch)


# ---- advection ----------------------------------------------------------------------------------
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
