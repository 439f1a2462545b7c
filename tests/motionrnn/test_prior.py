"""The S-PROG prior (motionrnn.prior) and the MotionRNN's sprog output built on it."""

from __future__ import annotations

import dataclasses
from typing import get_args

import numpy as np
import pytest
import torch

from motionrnn import MotionRNN, MotionRNNConfig
from motionrnn.config import PriorPart
from motionrnn.prior import PARTS, SprogPrior, quantile_trend
from motionrnn.sprog import sprog_forecast

CONFIG = MotionRNNConfig(hidden=8, frames_in=4, frames_out=5)


def storm(b: int = 2, t: int = 4, size: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    """Moving, growing blobs on the model's scale with a corner no radar sees."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = np.zeros((b, t, size, size), np.float32)
    for i in range(b):
        for _ in range(4):
            y0, x0, r = rng.uniform(10, size - 10), rng.uniform(10, size - 10), rng.uniform(4, 9)
            for k in range(t):
                d2 = (yy - y0 - 0.8 * k) ** 2 + (xx - x0 - 1.2 * k) ** 2
                frames[i, k] += (0.3 + 0.05 * k) * np.exp(-d2 / (2 * r**2))
    frames += 0.02 * rng.random(frames.shape).astype(np.float32)
    seen = np.ones_like(frames, dtype=bool)
    seen[:, :, :8, :8] = False
    motion = np.zeros((b, 2, size, size), np.float32)
    motion[:, 0], motion[:, 1] = 1.2, 0.8
    return {
        "frames": torch.from_numpy(np.where(seen, frames, 0.0)),
        "seen": torch.from_numpy(seen),
        "motion": torch.from_numpy(motion),
    }


def test_the_untrained_prior_is_sprog_exactly() -> None:
    s = storm()
    prior = SprogPrior(5, 6, CONFIG.wet_level, CONFIG.heavy_level, CONFIG.heavy_width)
    ours = prior(s["frames"], s["seen"], s["motion"], 5)
    theirs = sprog_forecast(s["frames"], s["seen"], s["motion"], 5, CONFIG.wet_level)
    torch.testing.assert_close(ours.frames, theirs.frames, rtol=0, atol=0)
    assert torch.equal(ours.known, theirs.known)
    assert not ours.known[:, :, :8, :8].any() and ours.known[:, :, 30:, 30:].all()


def test_quantile_trend_is_the_slope_of_the_sorted_values() -> None:
    base = torch.rand(1, 1, 500)
    frames = torch.cat([base * (1 + 0.1 * k) for k in range(4)], dim=1)  # values grow 10 %/step
    slope = quantile_trend(frames)
    expected = 0.1 * base.sort(dim=-1).values[0, 0]
    torch.testing.assert_close(slope[0], expected, atol=0.01, rtol=0.05)


def test_the_prior_learns_through_gains_blend_and_trend() -> None:
    s = storm()
    prior = SprogPrior(5, 6, CONFIG.wet_level, CONFIG.heavy_level, CONFIG.heavy_width)
    with torch.no_grad():
        prior.trend.fill_(0.5)  # off zero: the damping's gradient is b d(beta)/d(rho)
        prior.blend.fill_(0.1)
    out = prior(s["frames"], s["seen"], s["motion"], 5)
    loss = (out.frames * out.known).square().mean()
    loss.backward()
    for name, p in prior.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_the_prior_learns_only_the_parts_it_is_told() -> None:
    s = storm()
    prior = SprogPrior(5, 6, CONFIG.wet_level, CONFIG.heavy_level, CONFIG.heavy_width)
    prior.learn(["blend", "trend"])
    with torch.no_grad():
        prior.trend.fill_(0.5)
    out = prior(s["frames"], s["seen"], s["motion"], 5)
    (out.frames * out.known).square().mean().backward()
    learned = {n for n, p in prior.named_parameters() if p.grad is not None}
    assert learned == {"blend", "trend", "damping"}
    with pytest.raises(ValueError, match="unknown prior parts \\['gain'\\]"):
        prior.learn(["gain"])
    assert set(get_args(PriorPart)) == set(PARTS)  # the configuration's names are the parts


def test_a_growing_trend_grows_the_rain_it_matches() -> None:
    s = storm()
    prior = SprogPrior(5, 6, CONFIG.wet_level, CONFIG.heavy_level, CONFIG.heavy_width)
    start = prior(s["frames"], s["seen"], s["motion"], 5).frames
    with torch.no_grad():
        prior.trend.fill_(1.0)
    grown = prior(s["frames"], s["seen"], s["motion"], 5).frames
    # the storm's values rise with time: the trend carries that rise on, more at longer leads
    rise = (grown - start).flatten(2).amax(dim=-1)  # (B, leads)
    assert torch.all(rise[:, -1] > rise[:, 0]) and torch.all(rise[:, 0] > 0)


def sprog_model(**changes) -> MotionRNN:
    torch.manual_seed(0)
    return MotionRNN(dataclasses.replace(CONFIG, **changes))


def forward(model: MotionRNN, s: dict[str, torch.Tensor], n_out: int = 5):
    return model(
        s["frames"][:, :, None],
        n_out,
        coverage=s["seen"][:, -1:].float(),
        motion=s["motion"],
        seen=s["seen"][:, :, None].float(),
    )


def test_the_untrained_sprog_model_is_sprog() -> None:
    s = storm()
    out = forward(sprog_model(), s)
    theirs = sprog_forecast(s["frames"], s["seen"], s["motion"], 5, CONFIG.wet_level)
    assert out.frames.shape == (2, 5, 1, 48, 48) and out.start == 4
    known = out.known[:, :, 0] > 0
    assert torch.equal(known, theirs.known)
    torch.testing.assert_close(out.frames[:, :, 0][known], theirs.frames[known], atol=1e-5, rtol=0)


def test_the_sprog_model_keeps_the_priors_distribution_and_learns_through_it() -> None:
    s = storm()
    model = sprog_model()
    torch.nn.init.normal_(model.head.weight, std=0.05)  # a model that has learned something
    out = forward(model, s)
    prior = model.prior(s["frames"], s["seen"], s["motion"], 5)
    for lead in range(5):
        valid = out.known[0, lead, 0] > 0
        ours = out.frames[0, lead, 0][valid].sort().values
        theirs = prior.frames[0, lead][valid].sort().values
        torch.testing.assert_close(ours, theirs)  # the same values, moved
    target = s["frames"][:, 3:4].expand(-1, 5, -1, -1)[:, :, None]
    loss = ((out.frames - target) ** 2 * out.known).mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["head.weight"].abs().sum() > 0
    assert grads["prior.log_gain"].abs().sum() > 0
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())


def test_generate_returns_the_leads_and_the_sprog_output_refuses_a_teacher() -> None:
    s = storm()
    model = sprog_model()
    args = (s["frames"][:, :, None], 7)
    kwargs = {"coverage": s["seen"][:, -1:].float(), "motion": s["motion"]}
    assert model.generate(*args, **kwargs).shape == (2, 7, 1, 48, 48)  # beyond frames_out too
    with pytest.raises(ValueError, match="teacher"):
        model(*args, **kwargs, targets=torch.zeros(2, 7, 1, 48, 48), teacher=torch.ones(2, 9))
    with pytest.raises(ValueError, match="3 input frames"):
        MotionRNNConfig(frames_in=2)


def test_the_trend_moves_each_quantile_of_the_last_frame() -> None:
    """q_k = q_0 + beta_k dq rank by rank (regression: dq, in rank order, was added to the last
    frame in cell order, lifting whichever cells lay where the top ranks fall)."""
    s = storm()
    s["motion"].zero_()  # no advection: the output is the matched field itself
    s["seen"].fill_(True)
    prior = SprogPrior(5, 6, CONFIG.wet_level, CONFIG.heavy_level, CONFIG.heavy_width)
    with torch.no_grad():
        prior.trend.fill_(1.0)
    out = prior(s["frames"], s["seen"], s["motion"], 5)
    filled = s["frames"].flatten(2)
    expected = filled[:, -1].sort(dim=-1).values + quantile_trend(filled)  # beta_1 = b = 1
    expected = expected.clamp(min=float(filled.amin()))
    ours = out.frames[:, 0].flatten(1).sort(dim=-1).values
    wet = expected >= CONFIG.wet_level  # the mask sets the rest to the minimum
    torch.testing.assert_close(ours[wet], expected[wet])


def test_a_field_without_structure_forecasts_itself() -> None:
    """Uniform rain (pysteps raises there: its levels have no variance): the prior is the
    field, not NaN."""
    frames = torch.full((1, 4, 24, 24), 0.4)
    seen = torch.ones_like(frames, dtype=torch.bool)
    prior = SprogPrior(3, 6, CONFIG.wet_level, CONFIG.heavy_level, CONFIG.heavy_width)
    out = prior(frames, seen, torch.zeros(1, 2, 24, 24), 3)
    torch.testing.assert_close(out.frames, torch.full((1, 3, 24, 24), 0.4))
