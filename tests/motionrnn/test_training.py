import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motionrnn import (
    MotionRNN,
    MotionRNNConfig,
    event_loss,
    intensity_weights,
    motion_smoothness,
    next_frame_loss,
    parameter_groups,
    reverse_scheduled_sampling,
    scheduled_sampling,
    teacher_mask,
)
from motionrnn.training import box_mean, fss_loss


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
    assert next_frame_loss(frames[:, 1:], frames).item() == 0.0
    assert next_frame_loss(frames[:, :4], frames).item() == pytest.approx(
        ((frames[:, :4] - frames[:, 1:]) ** 2).mean().item()
    )
    both = next_frame_loss(frames[:, :4], frames, mse=1.0, mae=2.0).item()
    error = frames[:, :4] - frames[:, 1:]
    assert both == pytest.approx((error**2 + 2 * error.abs()).mean().item(), rel=1e-6)


def test_unseen_cells_never_count_in_the_loss() -> None:
    """A crop half outside coverage gives the loss of its covered half alone, whatever the
    unknown half holds."""
    gen = torch.Generator().manual_seed(1)
    frames = torch.rand(2, 5, 1, 8, 8, generator=gen)
    predictions = torch.rand(2, 4, 1, 8, 8, generator=gen)
    seen = torch.zeros(2, 5, 1, 8, 8, dtype=torch.bool)
    seen[..., :4] = True  # the west half is covered
    weights = intensity_weights(frames, torch.tensor([0.5]), torch.tensor([1.0, 3.0]))
    half = next_frame_loss(
        predictions[..., :4], frames[..., :4], None, weights[..., :4], mse=1.0, mae=1.0
    )
    masked = next_frame_loss(predictions, frames, seen, weights, mse=1.0, mae=1.0)
    assert masked.item() == pytest.approx(half.item(), rel=1e-6)
    garbage = frames.clone()
    garbage[..., 4:] = 99.0
    again = next_frame_loss(predictions, garbage, seen, weights, mse=1.0, mae=1.0)
    assert again.item() == pytest.approx(masked.item(), rel=1e-6)


def test_intensity_weights_follow_the_classes() -> None:
    values = torch.tensor([0.0, 0.19, 0.2, 0.5, 0.95])
    weights = intensity_weights(values, torch.tensor([0.2, 0.9]), torch.tensor([1.0, 5.0, 30.0]))
    assert weights.tolist() == [1.0, 1.0, 5.0, 5.0, 30.0]


def test_event_loss_is_one_minus_the_csi_of_sharp_forecasts() -> None:
    """With a step this sharp, the soft CSI is the CSI of "value > threshold" (pysteps' event),
    pooled over the batch and averaged over the thresholds; unseen cells never count."""
    gen = torch.Generator().manual_seed(2)
    frames = torch.rand(3, 5, 1, 8, 8, generator=gen)
    predictions = torch.rand(3, 4, 1, 8, 8, generator=gen)
    seen = torch.rand(3, 5, 1, 8, 8, generator=gen) > 0.3
    levels = torch.tensor([0.3, 0.7])

    def csi(level: float) -> float:
        f, o = predictions > level, frames[:, 1:] > level
        keep = seen[:, 1:]
        hits = (f & o & keep).sum()
        return (hits / ((f | o) & keep).sum()).item()

    expected = 1 - (csi(0.3) + csi(0.7)) / 2
    loss = event_loss(predictions, frames, levels, 1e-5, seen)
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    garbage = frames.clone()
    garbage[~seen] = 0.9  # whatever unseen cells hold
    assert event_loss(predictions, garbage, levels, 1e-5, seen).item() == pytest.approx(
        loss.item(), abs=1e-6
    )


@pytest.mark.parametrize("window", [1, 4, 15])
def test_box_mean_is_the_square_pool(window: int) -> None:
    x = torch.rand(3, 1, 40, 33, generator=torch.Generator().manual_seed(window))
    expected = F.avg_pool2d(x, window, stride=1, padding=window // 2)
    torch.testing.assert_close(box_mean(x, window), expected, rtol=0, atol=1e-6)


def test_fss_loss_of_sharp_forecasts_is_one_minus_pysteps_fss() -> None:
    """Pooled over the batch and the leads like pysteps' accumulated FSS, events "> threshold",
    zeros beyond the edges (its uniform filter's "constant" mode), unseen cells no event."""
    from pysteps.verification.spatialscores import fss_accum, fss_compute, fss_init

    gen = torch.Generator().manual_seed(5)
    frames = torch.rand(2, 4, 1, 30, 27, generator=gen)
    predictions = torch.rand(2, 3, 1, 30, 27, generator=gen)
    seen = torch.rand(2, 4, 1, 30, 27, generator=gen) > 0.2
    window, losses = 7, []
    for level in (0.4, 0.8):
        score = fss_init(level, window)
        for b in range(2):
            for t in range(3):
                keep = seen[b, t + 1, 0].numpy()
                forecast = np.where(keep, predictions[b, t, 0].numpy(), 0.0)
                observed = np.where(keep, frames[b, t + 1, 0].numpy(), 0.0)
                fss_accum(score, forecast, observed)
        losses.append(1 - fss_compute(score))
    loss = fss_loss(predictions, frames, [0.4, 0.8], 1e-6, window, seen)
    assert loss.item() == pytest.approx(np.mean(losses), abs=1e-4)
    assert loss.item() > 0.01  # independent random fields: not a perfect forecast


def test_event_loss_pulls_a_missed_event_up_and_a_false_alarm_down() -> None:
    frames = torch.tensor([0.0, 0.6, 0.1]).view(1, 3, 1, 1, 1).expand(1, 3, 1, 2, 2).clone()
    predictions = torch.tensor([0.45, 0.55]).view(1, 2, 1, 1, 1).expand(1, 2, 1, 2, 2).clone()
    predictions.requires_grad_(True)  # step 1 just misses 0.5 (observed 0.6), step 2 alarms
    event_loss(predictions, frames, torch.tensor([0.5]), 0.05).backward()
    grad = predictions.grad[0, :, 0, 0, 0]
    assert grad[0] < 0 < grad[1]  # descent raises the miss and lowers the false alarm


def test_motion_smoothness_is_zero_for_uniform_motion_only() -> None:
    uniform = torch.ones(2, 3, 2, 6, 6) * torch.tensor([1.5, -0.5]).view(1, 1, 2, 1, 1)
    assert motion_smoothness(uniform).item() == 0.0
    ramp = torch.arange(6.0).view(1, 1, 1, 1, 6).expand(1, 1, 2, 6, 6)
    assert motion_smoothness(ramp).item() == pytest.approx(1.0)  # dx = 1 everywhere, dy = 0


def test_parameter_groups_slow_down_the_offset_and_mask_gates() -> None:
    model = MotionRNN(MotionRNNConfig(layers=3, hidden=8))
    fast, slow, prior = parameter_groups(model, lr=1e-3, prior_lr=0.01)
    assert slow["lr"] == pytest.approx(1e-4) and prior["lr"] == 0.01
    assert len(slow["params"]) == 2 * 6  # 2 MotionGRUs x (update_reset, candidate, mask) x w, b
    assert len(prior["params"]) == 4  # the sprog prior's gains, blend, trend and damping
    ids = [id(p) for p in fast["params"] + slow["params"] + prior["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    advective = MotionRNN(MotionRNNConfig(layers=3, hidden=8, output="advective"))
    assert len(parameter_groups(advective, lr=1e-3)) == 2  # no prior, no third group
