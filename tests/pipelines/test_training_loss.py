"""The training loss of a batch (``pipelines.training.loop.Loss``): cells it counts."""

import torch

from motionrnn import MotionRNN, MotionRNNConfig
from pipelines.config import TrainingConfig
from pipelines.training.dataset import Sample
from pipelines.training.loop import Loss
from pipelines.training.validation import model_inputs

CONFIG = MotionRNNConfig(layers=2, hidden=8, patch=2, frames_in=3, frames_out=3)


def test_the_loss_never_counts_forecast_values_advected_from_unknown_cells() -> None:
    """A crop whose west quarter no radar sees, rain moving east: the advection carries
    whatever the unknown cells hold (here rain or dry) downwind into the forecast, and the loss
    must not care (it did: the model learnt to grow or kill rain that came out of unknown
    cells, and out of the crop's edges). The untrained model is advection alone."""
    model = MotionRNN(CONFIG)
    cfg = TrainingConfig(loss={"events": 1.0})
    loss_of = Loss(cfg, torch.device("cpu"))
    frames = torch.rand(2, 6, 1, 8, 16)
    seen = torch.ones(2, 6, 1, 8, 16, dtype=torch.bool)
    seen[:, :3, :, :, :4] = False  # the inputs' west columns are unknown...
    motion = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1).expand(2, 2, 8, 16).clone()

    def loss(unknown_value: float) -> float:
        held = frames.clone()
        held[:, :3, :, :, :4] = unknown_value  # ...what the loader has put there
        batch = Sample(held, seen, motion)
        inputs, coverage, velocity = model_inputs(batch, 3)
        prediction = model(inputs, 3, coverage=coverage, motion=velocity)
        return loss_of(prediction, batch).item()

    assert loss(0.0) == loss(0.9)
