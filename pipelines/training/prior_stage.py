"""The sprog model's first stage: the few parameters of its prior (``motionrnn.prior``: gains
per cascade level and lead, the heavy-rain blend, the distribution's trend) trained on whole
domains, where S-PROG's statistics are the forecast's own; then frozen, so that the datasets
of the second stage compute the same prior on whole domains and cut it like their crops.

The recurrent stack does not run in this stage: with its head at zero (the untrained model) the
model's output is the prior itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from motionrnn import MotionRNN, Prediction
from pipelines.training.dataset import Sample


def prior_loss(model: MotionRNN, sample: Sample, loss_of, frames_in: int, n_out: int):
    """The training loss of the prior's forecast of one (batch of) whole-domain window(s)."""
    out = model.prior(
        sample.frames[:, :frames_in, 0], sample.seen[:, :frames_in, 0], sample.motion, n_out
    )
    prediction = Prediction(
        out.frames[:, :, None], None, out.known[:, :, None].float(), start=frames_in
    )
    return loss_of(prediction, sample)


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Gradients averaged over the ranks (what DDP does, for parameters it does not see)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def frozen_prior(model: MotionRNN) -> nn.Module:
    """Stop the prior's learning; a CPU copy of it for the datasets of the next stage."""
    for p in model.prior.parameters():
        p.requires_grad_(False)
    return copy.deepcopy(model.prior).cpu().eval()


def groups_of(items: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    """Consecutive groups of ``size`` items (the last one may be shorter)."""
    group: list[Sample] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def prior_step(
    model: MotionRNN,
    optimiser: torch.optim.Optimizer,
    samples: list[Sample],
    loss_of,
    frames_in: int,
    n_out: int,
    device: torch.device,
    clip_norm: float,
) -> float:
    """One update of the prior: gradients of the mean loss over whole-domain windows (one at a
    time: their sizes differ), averaged over ranks and clipped; then the prior's parameters are
    kept in their ranges (the blend between 0 and 1). Returns the loss."""
    optimiser.zero_grad(set_to_none=True)
    total = 0.0
    for sample in samples:
        sample = Sample(*(t.to(device) for t in sample))
        loss = prior_loss(model, sample, loss_of, frames_in, n_out) / len(samples)
        loss.backward()
        total += loss.item()
    average_gradients(model.prior.parameters())
    torch.nn.utils.clip_grad_norm_(model.prior.parameters(), clip_norm)
    optimiser.step()
    model.prior.bound()
    return total
