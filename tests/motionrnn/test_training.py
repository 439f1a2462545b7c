import pytest
import torch

from motionrnn import (
    MotionRNN,
    MotionRNNConfig,
    next_frame_loss,
    parameter_groups,
    reverse_scheduled_sampling,
    scheduled_sampling,
    teacher_mask,
)


def test_scheduled_sampling() -> None:
    assert scheduled_sampling(0) == (1.0, 1.0)
    assert scheduled_sampling(25_000) == pytest.approx((1.0, 0.5))
    assert scheduled_sampling(50_000) == (1.0, 0.0)
    assert scheduled_sampling(80_000) == (1.0, 0.0)


def test_reverse_scheduled_sampling() -> None:
    assert reverse_scheduled_sampling(0) == (0.5, 0.5)
    observed, forecast = reverse_scheduled_sampling(30_000)
    assert observed == pytest.approx(1 - 0.5 * torch.e**-1)
    assert forecast == pytest.approx(0.4)
    assert reverse_scheduled_sampling(50_000) == (1.0, 0.0)


def test_teacher_mask_follows_the_probabilities() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = teacher_mask(reverse_scheduled_sampling(30_000), 4000, 6, 12, generator=gen)
    assert mask.shape == (4000, 16) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask[:, :5].mean().item() == pytest.approx(0.816, abs=0.02)
    assert mask[:, 5:].mean().item() == pytest.approx(0.4, abs=0.02)


def test_next_frame_loss_compares_with_the_following_frames() -> None:
    frames = torch.rand(2, 5, 1, 4, 4)
    assert next_frame_loss(frames[:, 1:], frames[:, :2], frames[:, 2:]).item() == 0.0
    assert next_frame_loss(frames[:, :4], frames[:, :2], frames[:, 2:]).item() == pytest.approx(
        ((frames[:, :4] - frames[:, 1:]) ** 2).mean().item()
    )


def test_parameter_groups_slow_down_the_offset_and_mask_gates() -> None:
    model = MotionRNN(MotionRNNConfig(layers=3, hidden=8))
    fast, slow = parameter_groups(model, lr=1e-3)
    assert slow["lr"] == pytest.approx(1e-4)
    assert len(slow["params"]) == 2 * 6  # 2 MotionGRUs x (update_reset, candidate, mask) x w, b
    ids = [id(p) for p in fast["params"] + slow["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
