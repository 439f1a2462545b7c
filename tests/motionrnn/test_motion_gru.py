import pytest
import torch

from motionrnn import MotionRNN, MotionRNNConfig
from motionrnn.layers import MotionGRU


def test_zero_gates_give_the_equations_in_closed_form() -> None:
    """With zero gate weights u, r, z are functions of the biases only: check F_t, D_t."""
    torch.manual_seed(0)
    gru = MotionGRU(hidden=8, filter_size=3, neighbours=3, alpha=0.3)
    h = torch.randn(2, 8, 6, 10)
    flow, trend = torch.randn(2, 18, 3, 5), torch.randn(2, 18, 3, 5)
    x, new_flow, new_trend = gru(h, flow, trend)
    u = torch.sigmoid(gru.update_reset.bias[:18]).view(1, 18, 1, 1)
    z = torch.tanh(gru.candidate.bias).view(1, 18, 1, 1)
    want_trend = trend + 0.3 * (flow - trend)
    torch.testing.assert_close(new_trend, want_trend)
    torch.testing.assert_close(new_flow, u * z + (1 - u) * flow + want_trend)
    assert x.shape == h.shape


@pytest.mark.parametrize("size", [(6, 10), (7, 5)])  # even and odd state grids
def test_shapes(size: tuple[int, int]) -> None:
    gru = MotionGRU(hidden=16, filter_size=5, neighbours=3, alpha=0.5)
    half = ((size[0] + 1) // 2, (size[1] + 1) // 2)
    motion = torch.zeros(1, 18, *half)
    x, flow, trend = gru(torch.randn(1, 16, *size), motion, motion)
    assert x.shape == (1, 16, *size) and flow.shape == trend.shape == (1, 18, *half)


def _grads_after_a_sequence(model: MotionRNN) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 6, 1, 16, 24, generator=gen)
    model.zero_grad()
    out = model(frames[:, :3], 3).frames
    ((out - frames[:, 1:]) ** 2).mean().backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_gradients_reach_every_parameter_including_the_zero_initialised_gates() -> None:
    torch.manual_seed(0)
    model = MotionRNN(
        MotionRNNConfig(layers=3, hidden=16, filter_size=3, patch=2, output="frame", context=False)
    )
    gates = [
        p
        for n, p in model.named_parameters()
        if n.endswith(("update_reset.weight", "candidate.weight"))
    ]
    assert len(gates) == 4  # two MotionGRUs
    assert all(float(p.detach().abs().max()) == 0.0 for p in gates)

    for _ in range(2):  # at the zero initialisation, and after an optimiser step moved it
        grads = _grads_after_a_sequence(model)
        missing = [name for name, g in grads.items() if g is None or float(g.abs().max()) == 0.0]
        assert missing == []
        torch.optim.Adam(model.parameters(), lr=1e-3).step()
    assert all(float(p.detach().abs().max()) > 0.0 for p in gates)


def test_offsets_change_the_output() -> None:
    """The motion filter is used: perturbing the offset gate's bias changes the forecast."""
    torch.manual_seed(0)
    model = MotionRNN(
        MotionRNNConfig(layers=2, hidden=16, filter_size=3, patch=2, output="frame", context=False)
    )
    frames = torch.rand(1, 4, 1, 16, 16)
    before = model.generate(frames, 2)
    with torch.no_grad():
        model.motion_grus[0].candidate.bias.add_(1.0)
    assert (model.generate(frames, 2) - before).abs().max() > 1e-4
