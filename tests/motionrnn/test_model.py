import dataclasses
import json

import pytest
import torch

from motionrnn import MotionRNN, MotionRNNConfig
from motionrnn.model import clip_at_dry

# the paper's model: frames out directly, no context inputs
SMALL = MotionRNNConfig(
    layers=3,
    hidden=8,
    filter_size=3,
    patch=2,
    frames_in=3,
    frames_out=2,
    output="frame",
    context=False,
)
VARIANTS = {
    "motionrnn-predrnn": SMALL,
    "motionrnn-convlstm": dataclasses.replace(SMALL, base="convlstm"),
    "predrnn": dataclasses.replace(SMALL, motion=False),
    "convlstm": dataclasses.replace(SMALL, base="convlstm", motion=False),
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize(("patch", "height", "width"), [(1, 6, 10), (2, 12, 20), (4, 36, 20)])
def test_shapes_on_non_square_frames(name: str, patch: int, height: int, width: int) -> None:
    config = dataclasses.replace(VARIANTS[name], patch=patch, channels=2)
    model = MotionRNN(config)
    frames = torch.rand(1, 3, 2, height, width)
    assert model(frames, 4).frames.shape == (1, 3 + 4 - 1, 2, height, width)
    assert model.generate(frames).shape == (1, 2, 2, height, width)


def test_deterministic_and_independent_of_the_batch() -> None:
    torch.manual_seed(0)
    model = MotionRNN(SMALL)
    frames = torch.rand(3, 3, 1, 12, 16)
    first = model.generate(frames)
    torch.testing.assert_close(model.generate(frames), first, rtol=0, atol=0)
    alone = model.generate(frames[1:2])  # batch of 1, then a batch of 3: any size at each call
    torch.testing.assert_close(alone, first[1:2], atol=1e-6, rtol=1e-5)


def test_generate_is_the_forecast_tail_of_forward_without_autograd() -> None:
    torch.manual_seed(0)
    model = MotionRNN(SMALL)
    frames = torch.rand(2, 3, 1, 8, 8)
    forecast = model.generate(frames, 5)
    assert forecast.shape == (2, 5, 1, 8, 8) and not forecast.requires_grad
    torch.testing.assert_close(forecast, model(frames, 5).frames[:, 2:].detach())


def test_teacher_forcing_feeds_the_true_frames() -> None:
    torch.manual_seed(0)
    model = MotionRNN(SMALL)
    frames = torch.rand(2, 5, 1, 8, 8)
    inputs, targets = frames[:, :3], frames[:, 3:]
    # teacher all ones: every step reads the true frame, like 4 observed frames and 1 forecast
    forced = model(inputs, 2, targets=targets, teacher=torch.ones(2, 3)).frames
    torch.testing.assert_close(forced, model(frames[:, :4], 1).frames)
    # true inputs, own forecasts: the same as no teacher at all
    free = model(inputs, 2, targets=targets, teacher=torch.tensor([[1.0, 1.0, 0.0]] * 2)).frames
    torch.testing.assert_close(free, model(inputs, 2).frames)
    assert (forced[:, -1] - free[:, -1]).abs().max() > 1e-6
    with pytest.raises(ValueError, match="targets"):
        model(inputs, 2, teacher=torch.ones(2, 3))


def test_plain_base_has_no_motion_parts() -> None:
    plain = MotionRNN(VARIANTS["predrnn"])
    assert len(plain.motion_grus) == 0 and plain.highway_in is None
    assert len(MotionRNN(SMALL).motion_grus) == SMALL.layers - 1


def test_parameter_counts_at_the_reference_recipe() -> None:
    reference = MotionRNNConfig.reference()
    motion = n_params(MotionRNN(reference))
    plain = n_params(MotionRNN(dataclasses.replace(reference, motion=False)))
    print(f"PredRNN {plain:,}  MotionRNN-PredRNN {motion:,}  (+{motion / plain - 1:.1%})")
    assert plain == 6_410_240
    assert motion == 7_214_657
    assert 0.10 <= motion / plain - 1 <= 0.15


def test_indivisible_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="divisible"):
        MotionRNN(SMALL)(torch.zeros(1, 3, 1, 9, 8), 1)


def test_wiring_of_the_highway_and_the_zigzag_memory() -> None:
    """Hooks record what each cell receives: the highway is the layer below's output before its
    MotionGRU fusion (a 1 x 1 projection of the frame at layer 0), and the top layer's memory M
    feeds layer 0 at the next step."""
    torch.manual_seed(0)
    model = MotionRNN(SMALL)
    calls: list[tuple[int, tuple, tuple]] = []
    for layer, cell in enumerate(model.cells):
        cell.register_forward_hook(lambda _, a, out, layer=layer: calls.append((layer, a, out)))
    fused: list[torch.Tensor] = []
    model.motion_grus[0].register_forward_hook(lambda _, a, out: fused.append(out[0]))
    frames = torch.rand(1, 3, 1, 8, 12)
    with torch.no_grad():
        model(frames, 1)
    layers = SMALL.layers
    assert len(calls) == 3 * layers
    for t in range(3):
        step = calls[t * layers : (t + 1) * layers]
        x = step[0][1][0]
        torch.testing.assert_close(step[0][1][4], model.highway_in(x))
        for below, above in zip(step, step[1:], strict=False):
            torch.testing.assert_close(above[1][4], below[2][0])  # highway = output before fusion
        torch.testing.assert_close(step[1][1][0], fused[t])  # layer 1 reads the fused state
        assert (fused[t] - step[0][2][0]).abs().max() > 1e-6
        if t > 0:
            torch.testing.assert_close(step[0][1][3], calls[t * layers - 1][2][2])  # M zig-zags


# ---- the advective output and the context inputs ---------------------------------------------

ADVECTIVE = dataclasses.replace(SMALL, output="advective", context=True, layers=2)


def _blob(height: int, width: int, x0: float, y0: float) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(float(height)), torch.arange(float(width)), indexing="ij")
    return torch.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * 2.0**2))


def test_the_untrained_advective_model_moves_the_last_frame_along_the_prior() -> None:
    """Zero-initialised heads: no correction, no source; the frame moves 1.5 px east and
    0.5 px north per step along a uniform prior, and it is sampled once from the last frame."""
    model = MotionRNN(ADVECTIVE)
    frames = torch.stack([_blob(24, 32, 8 + 1.5 * t, 12 - 0.5 * t) for t in range(3)])
    inputs = frames[None, :, None]
    motion = torch.tensor([1.5, -0.5]).view(1, 2, 1, 1).expand(1, 2, 24, 32)
    coverage = torch.ones(1, 1, 24, 32)
    forecast = model.generate(inputs, 4, coverage, motion)[0, :, 0]
    for k in range(4):  # bilinear reads between cells smooth a sigma-2 blob by up to 6 %...
        expected = _blob(24, 32, 8 + 1.5 * (k + 3), 12 - 0.5 * (k + 3))
        torch.testing.assert_close(forecast[k], expected, atol=0.06, rtol=0)
    # ...but do not add up: lead 4 lies a whole number of cells away and is exact
    torch.testing.assert_close(
        forecast[3], _blob(24, 32, 8 + 1.5 * 6, 12 - 0.5 * 6), atol=1e-5, rtol=0
    )
    assert (forecast.sum(dim=(1, 2)) - frames[-1].sum()).abs().max() < 0.05 * frames[-1].sum()


def test_forecast_values_read_from_unknown_cells_are_marked_unknown() -> None:
    """Motion 2 px east per step, the 4 west columns unseen: the values a step reads from
    them (or from beyond the map) are unknown, 2 more columns per lead after the inputs."""
    model = MotionRNN(ADVECTIVE)
    inputs = torch.rand(1, 3, 1, 8, 16)
    coverage = torch.ones(1, 1, 8, 16)
    coverage[..., :4] = 0
    motion = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 8, 16)
    known = model(inputs, 3, coverage=coverage, motion=motion).known[0, :, 0]
    assert known.shape == (5, 8, 16)
    # each input step advects the frame before it (2 px); the forecast then goes 4, 6 px back
    for t, edge in enumerate([6, 6, 6, 8, 10]):
        assert (known[t, :, :edge] == 0).all() and (known[t, :, edge:] == 1).all()


def test_a_cell_clipped_at_dry_still_learns_that_it_missed_rain() -> None:
    x = torch.tensor([-0.3, 0.0, 0.4], requires_grad=True)
    clipped = clip_at_dry(x)
    assert clipped.tolist() == [0.0, 0.0, pytest.approx(0.4)]
    ((clipped - torch.tensor([0.5, 0.5, 0.5])) ** 2).sum().backward()
    assert x.grad[0] < 0  # descent raises the dried-out cell (relu's gradient there: 0)


def test_a_constant_source_does_not_compound_over_the_leads() -> None:
    """The source is the change since the advected reference: a head that says +0.05 gives
    the advected frame + 0.05 at every lead, not 0.05 more per lead (which made training swing
    between drying out and flooding the long leads)."""
    model = MotionRNN(ADVECTIVE)
    step = model.step

    def constant_source(x: torch.Tensor, state):
        y, state = step(x, state)
        return torch.cat([torch.zeros_like(y[:, :2]), torch.full_like(y[:, 2:], 0.05)], 1), state

    inputs = torch.rand(1, 3, 1, 8, 12)
    context = {"coverage": torch.ones(1, 1, 8, 12), "motion": torch.zeros(1, 2, 8, 12)}
    plain = model.generate(inputs, 4, **context)
    model.step = constant_source
    torch.testing.assert_close(model.generate(inputs, 4, **context), plain + 0.05)


def test_advective_model_needs_its_inputs_and_learns_through_every_head() -> None:
    model = MotionRNN(ADVECTIVE)
    frames = torch.rand(2, 5, 1, 8, 12)
    with pytest.raises(ValueError, match="coverage and the motion prior"):
        model(frames[:, :3], 2)
    motion = torch.randn(2, 2, 8, 12)
    out = model(frames[:, :3], 2, coverage=torch.ones(2, 1, 8, 12), motion=motion)
    assert out.frames.shape == (2, 4, 1, 8, 12) and out.motion.shape == (2, 4, 2, 4, 6)
    ((out.frames - frames[:, 1:]) ** 2).mean().backward()
    assert model.head.weight.grad.abs().sum() > 0  # zero-initialised, yet it learns
    assert model.cells[0].gates_h.weight.grad is not None


def test_teacher_forcing_restarts_the_advection_from_the_true_frame() -> None:
    torch.manual_seed(0)
    model = MotionRNN(ADVECTIVE)
    torch.nn.init.normal_(model.head.weight, std=0.1)  # a trained-looking model
    frames = torch.rand(2, 5, 1, 8, 12)
    context = {"coverage": torch.ones(2, 1, 8, 12), "motion": torch.randn(2, 2, 8, 12)}
    inputs, targets = frames[:, :3], frames[:, 3:]
    forced = model(inputs, 2, targets=targets, teacher=torch.ones(2, 3), **context).frames
    torch.testing.assert_close(forced, model(frames[:, :4], 1, **context).frames)
    free = model(
        inputs, 2, targets=targets, teacher=torch.tensor([[1.0, 1.0, 0.0]] * 2), **context
    ).frames
    torch.testing.assert_close(free, model(inputs, 2, **context).frames)


def test_a_checkpoint_config_without_an_output_is_a_frame_model() -> None:
    old = {k: v for k, v in json.loads(SMALL.to_json()).items() if k not in ("output", "context")}
    config = MotionRNNConfig.from_json(json.dumps(old))
    assert config.output == "frame" and not config.context
