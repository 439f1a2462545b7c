"""The share of a training crop's observed cells that are in the loss, lead by lead.

    PYTHONPATH=. .venv/bin/python bench/loss_share.py --archive DIR [--crops 96 128] [--samples 48]

A forecast value is in the loss where its target is observed and the value was read from known
cells. The old model (output ``advective``) advects the crop itself, so values advected from
beyond the crop are unknown and the long leads lose most of their cells, always downstream; the
sprog model reads its prior at each lead from the whole domain's S-PROG forecast, cut like the
crop (``WindowDataset(prior=...)``). Both untrained (the mask does not depend on training), on
the same --samples training crops of bench/skill.py's split (drawn as in training: wet area,
turns, flips), per crop size. The archive is ingested into --archive when it is absent.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from bench.skill import DATA, TRAINING, ingest_real
from motionrnn import KNOWN, MotionRNN
from pipelines.config import load_config
from pipelines.store.archive import Archive
from pipelines.training.dataset import Sample, WindowDataset, prior_of
from pipelines.training.run import collect_windows, spread
from pipelines.training.validation import model_inputs

OUTPUTS = ("advective", "sprog")


@torch.no_grad()
def shares(store: Path, output: str, crop: int, samples: int) -> np.ndarray:
    """Per lead: cells in the loss / observed target cells, pooled over the samples."""
    cfg = load_config(
        None, [*TRAINING, f"training.model.output={output}", f"training.data.crop={crop}"]
    ).training
    archive = Archive(store)
    snapshot = archive.head()
    windows = spread(collect_windows(archive, snapshot, cfg)["train"], samples)
    model = MotionRNN(cfg.model).eval()
    prior = model.prior.eval() if model.prior is not None else None
    data = WindowDataset(store, windows, cfg.data, augment=True, snapshot=snapshot, prior=prior)
    n_in, n_out = cfg.data.frames_in, cfg.data.frames_out
    in_loss, observed = np.zeros(n_out), np.zeros(n_out)
    for i in range(len(data)):
        batch = Sample(*(t[None] for t in data[i]))
        inputs, coverage, motion = model_inputs(batch, n_in)
        prediction = model(
            inputs,
            n_out,
            coverage=coverage,
            motion=motion,
            seen=batch.seen[:, :n_in].float(),
            prior=prior_of(batch),
        )
        target = batch.seen[:, n_in:, 0]  # (1, T_out, h, w)
        known = prediction.known[:, -n_out:, 0] >= KNOWN
        in_loss += (target & known).sum(dim=(0, 2, 3)).numpy()
        observed += target.sum(dim=(0, 2, 3)).numpy()
    return in_loss / observed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--archive", type=Path, required=True, help="ingested here if absent")
    parser.add_argument("--crops", type=int, nargs="+", default=[96, 128])
    parser.add_argument("--samples", type=int, default=48)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.archive.exists():
        ingest_real(args.data, args.archive)
    step = 5  # minutes: the training events' time step
    for crop in args.crops:
        rows = {o: shares(args.archive, o, crop, args.samples) for o in OUTPUTS}
        leads = len(rows[OUTPUTS[0]])
        print(f"\nshare of observed cells in the loss, crops of {crop}, {args.samples} samples")
        print(f"{'lead (min)':<12}" + "".join(f"{step * (k + 1):>6d}" for k in range(leads)))
        for output, values in rows.items():
            print(f"{output:<12}" + "".join(f"{v:6.2f}" for v in values))
        ratio = rows["sprog"] / rows["advective"]
        print(f"{'ratio':<12}" + "".join(f"{v:6.2f}" for v in ratio))


if __name__ == "__main__":
    main()
