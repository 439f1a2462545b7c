"""A small model learns to move blobs better than copying the last frame (a few hundred steps)."""

import time

import pytest
import torch

from motionrnn import MotionRNN, MotionRNNConfig, next_frame_loss

FRAMES_IN, FRAMES_OUT, SIZE = 4, 4, 32


def moving_blobs(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, T, 1, SIZE, SIZE) sequences of two Gaussian blobs, each at its own constant velocity."""
    t = torch.arange(FRAMES_IN + FRAMES_OUT, dtype=torch.float32).view(1, -1, 1, 1, 1)
    grid = torch.arange(SIZE, dtype=torch.float32)
    yy, xx = grid.view(-1, 1), grid.view(1, -1)
    frames = torch.zeros(n, FRAMES_IN + FRAMES_OUT, 1, SIZE, SIZE)
    for _ in range(2):
        y0, x0 = (8 + 16 * torch.rand(2, n, 1, 1, 1, 1, generator=generator)).unbind(0)
        vy, vx = (6 * torch.rand(2, n, 1, 1, 1, 1, generator=generator) - 3).unbind(0)
        d2 = (yy - y0 - vy * t) ** 2 + (xx - x0 - vx * t) ** 2  # up to 3 px per frame
        frames = torch.maximum(frames, torch.exp(-d2 / (2 * 3.0**2)))
    return frames


@pytest.mark.slow
def test_learns_motion_beyond_persistence() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    data = moving_blobs(16, gen)
    inputs, targets = data[:, :FRAMES_IN], data[:, FRAMES_IN:]
    config = MotionRNNConfig(
        layers=2,
        hidden=16,
        filter_size=3,
        patch=4,
        frames_in=FRAMES_IN,
        frames_out=FRAMES_OUT,
        output="frame",
        context=False,
    )
    model = MotionRNN(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _ in range(300):
        loss = next_frame_loss(model(inputs, FRAMES_OUT).frames, data)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    def mse(forecast: torch.Tensor, truth: torch.Tensor) -> float:
        return ((forecast - truth) ** 2).mean().item()

    held_out = moving_blobs(32, gen)
    seen, unseen = (inputs, targets), (held_out[:, :FRAMES_IN], held_out[:, FRAMES_IN:])
    scores = {}
    for name, (x, y) in {"training": seen, "held-out": unseen}.items():
        scores[name] = (mse(model.generate(x), y), mse(x[:, -1:], y))
        print(f"{name}: forecast MSE {scores[name][0]:.5f}, persistence {scores[name][1]:.5f}")
    print(f"last training loss {loss.item():.5f}, {time.perf_counter() - start:.0f} s")
    assert scores["training"][0] < 0.2 * scores["training"][1]
    assert scores["held-out"][0] < 0.6 * scores["held-out"][1]  # motion, not memorisation
