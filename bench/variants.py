"""Quick comparison of training variants on bench/skill.py's split: loss, learning rate, model.

    PYTHONPATH=. .venv/bin/python bench/variants.py --archive DIR \
        --variant base= --variant events=training.loss.events=1,training.loss.mse=0 \
        [--steps 100] [--every 25] [--threads 2]

Each variant trains from the same untrained model (the advective output starts as the
extrapolation nowcast) in this one process, without Ray, on the training windows of
bench/skill.py's split (MeteoSwiss), with that benchmark's settings plus the variant's; every
``--every`` steps it scores the validation windows (KNMI, whole domain) against the
extrapolation nowcast on the same cells: CSI at 1 and 5 mm/h and MAE, pooled and per lead.
A screening tool, minutes per variant: bench/skill.py decides (test windows, time budgets,
S-PROG). The archive is ingested into --archive when it does not exist yet.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from bench.skill import DATA, REAL, ingest_real
from motionrnn import MotionRNN
from pipelines.config import load_config
from pipelines.store.archive import Archive
from pipelines.training.dataset import Sample, WindowDataset
from pipelines.training.loop import Loss, make_optimiser
from pipelines.training.run import collect_windows, spread
from pipelines.training.sampler import WeightedWindowSampler
from pipelines.training.schedule import lr_factor
from pipelines.training.validation import Validator, model_inputs

CPU = torch.device("cpu")


def line(name: str, step: int, scores: dict) -> str:
    m, e = scores["model"], scores["extrapolation"]
    leads = " ".join(f"{v:.3f}" for v in m["per_lead"]["csi_1mm"])
    return (
        f"{name:<14} step {step:>4}: CSI 1 mm/h {m['csi_1mm']:.3f} (extrapolation "
        f"{e['csi_1mm']:.3f}, ratio {m['csi_1mm'] / e['csi_1mm']:.3f}), CSI 5 mm/h "
        f"{m['csi_5mm']:.3f} ({e['csi_5mm']:.3f}), MAE {m['mae']:.3f} ({e['mae']:.3f}); "
        f"CSI 1 mm/h per lead {leads}"
    )


def train_variant(store: Path, name: str, settings: list[str], args) -> list[dict]:
    cfg = load_config(None, REAL + settings).training
    torch.manual_seed(cfg.data.seed)
    archive = Archive(store)
    snapshot = archive.head()
    windows = collect_windows(archive, snapshot, cfg)
    train, validation = windows["train"], spread(windows["validation"], cfg.validation_windows)
    model = MotionRNN(cfg.model)
    optimiser, peaks = make_optimiser(model, cfg)
    data = WindowDataset(store, train, cfg.data, augment=True, snapshot=snapshot)
    val = WindowDataset(
        store,
        validation,
        cfg.data,
        augment=False,
        snapshot=snapshot,
        whole_domain_multiple=cfg.model.patch,
    )
    validator = Validator(val, range(len(val)), cfg, 4, methods=["extrapolation"])
    loss_of = Loss(cfg, CPU)
    history = [{"step": 0, **validator.run(model, CPU, False).summary()}]
    print(line(name, 0, history[-1]), flush=True)
    step, epoch, started = 0, 0, time.perf_counter()
    while step < args.steps:
        sampler = WeightedWindowSampler(
            [w.weight for w in train], args.every * cfg.batch_size, cfg.data.seed, 0
        )
        sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        for batch in torch.utils.data.DataLoader(data, cfg.batch_size, sampler=sampler):
            factor = lr_factor(step / args.steps, cfg.optimiser, warm_up=False)
            for group, peak in zip(optimiser.param_groups, peaks, strict=True):
                group["lr"] = peak * factor
            batch = Sample(*batch)
            inputs, coverage, motion = model_inputs(batch, cfg.data.frames_in)
            prediction = model(inputs, cfg.data.frames_out, coverage=coverage, motion=motion)
            loss = loss_of(prediction, batch)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optimiser.clip_norm)
            optimiser.step()
            step += 1
        epoch += 1
        history.append({"step": step, **validator.run(model, CPU, False).summary()})
        rate = (time.perf_counter() - started) / step
        print(f"{line(name, step, history[-1])} ({rate:.1f} s a step with validation)", flush=True)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--archive", type=Path, required=True, help="ingested here if absent")
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        help="NAME=SETTING,SETTING (configuration overrides, as motioncast --set)",
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if not args.archive.exists():
        ingest_real(args.data, args.archive)
    results = {}
    for spec in args.variant:
        name, _, settings = spec.partition("=")
        results[name] = train_variant(
            args.archive, name, [s for s in settings.split(",") if s], args
        )
    print("\nvariant         CSI 1 mm/h / extrapolation: at each validation")
    for name, history in results.items():
        ratios = [h["model"]["csi_1mm"] / h["extrapolation"]["csi_1mm"] for h in history]
        print(
            f"{name:<14} " + " ".join(f"{r:.3f}" for r in ratios) + f"  best {np.max(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
