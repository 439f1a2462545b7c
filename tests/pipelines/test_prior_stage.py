"""The sprog model's first stage (``pipelines.training.prior_stage``): one update of its prior."""

import torch

from motionrnn import MotionRNN, MotionRNNConfig
from pipelines.config import TrainingConfig
from pipelines.training.dataset import Sample
from pipelines.training.loop import Loss
from pipelines.training.prior_stage import prior_step

CONFIG = MotionRNNConfig(hidden=8, frames_in=3, frames_out=3)
CPU = torch.device("cpu")


def windows(n: int = 2, size: int = 32) -> list[Sample]:
    """Whole-domain windows (batches of one) of rain moving east, heavy at its core."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    frames = torch.stack(
        [torch.exp(-((yy - 16.0) ** 2 + (xx - 8.0 - 2 * k) ** 2) / 40) for k in range(6)]
    )[:, None]  # (T, 1, h, w) on the model's scale: the core above the heavy level
    motion = torch.tensor([2.0, 0.0]).view(2, 1, 1).expand(2, size, size).clone()
    seen = torch.ones_like(frames, dtype=torch.bool)
    sample = Sample(frames[None], seen[None], motion[None], torch.empty(0))
    return [sample] * n


def test_a_prior_step_keeps_the_blend_a_weight_between_sprog_and_extrapolation() -> None:
    """The blend w mixes S-PROG and extrapolation where rain is heavy; learned unbounded, it
    grew past 1 at long leads and below 0 at lead 1, and CSI at 1 mm/h fell with it."""
    model = MotionRNN(CONFIG)
    model.prior.learn(["blend"])
    with torch.no_grad():
        model.prior.blend.copy_(torch.tensor([-0.5, 0.4, 3.0]))
    optimiser = torch.optim.SGD(model.prior.parameters(), lr=1e-6)
    loss_of = Loss(TrainingConfig(), CPU)
    loss = prior_step(model, optimiser, windows(), loss_of, 3, 3, CPU, clip_norm=1.0)
    assert loss > 0
    torch.testing.assert_close(model.prior.blend, torch.tensor([0.0, 0.4, 1.0]), atol=1e-5, rtol=0)
