"""Screening of the sprog model's first stage: its prior (``motionrnn.prior``) trained alone.

    PYTHONPATH=. .venv/bin/python bench/variants.py --archive DIR \
        --variant default= --variant blend="training.prior_learns=[blend,trend]" \
        [--steps 60] [--windows 15] [--threads 2]

Each variant starts from the untrained model (its prior is S-PROG exactly) and trains the
prior's few parameters in this one process, without Ray, the way the first stage of
``motioncast train`` does (``pipelines.training.prior_stage``: whole-domain training windows of
bench/skill.py's split, ``training.prior_batch`` a step, AdamW at ``optimiser.prior_lr``, the
configured loss), with bench/skill.py's settings plus the variant's. Then it scores --windows
test windows of the 5-minute test events (RMI, FMI; whole domains) against pysteps S-PROG on
the same cells: CSI at 1, 5 and 10 mm/h and FSS at 1 and 5 mm/h, mean over the leads up to 60
minutes, as ratios to S-PROG, and prints the learned parameters. A screening tool, minutes per
variant: bench/skill.py decides. The archive is ingested into --archive when it is absent.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from bench.skill import DATA, FIVE_MINUTE, TRAINING, ingest_real
from motionrnn import MotionRNN
from pipelines.config import load_config
from pipelines.store.archive import Archive
from pipelines.training.dataset import Sample, WindowDataset
from pipelines.training.evaluate import score_models
from pipelines.training.loop import Loss, make_optimiser
from pipelines.training.prior_stage import groups_of, prior_step
from pipelines.training.run import collect_windows, spread

CPU = torch.device("cpu")
METRICS = ("csi_1mm", "csi_5mm", "csi_10mm", "fss_1mm_10", "fss_5mm_10")
LEADS = 12  # 5-60 minutes at 5-minute steps


def train_prior(store: Path, settings: list[str], steps: int) -> tuple[MotionRNN, float]:
    """The model after ``steps`` steps of the prior's stage; and the seconds a step took."""
    cfg = load_config(None, TRAINING + settings).training
    torch.manual_seed(cfg.data.seed)
    archive = Archive(store)
    snapshot = archive.head()
    train = collect_windows(archive, snapshot, cfg)["train"]
    model = MotionRNN(cfg.model)
    if model.prior is None:
        raise SystemExit("the variant's model has no prior stage (training.model.output)")
    model.prior.learn(cfg.prior_learns)
    optimiser, _ = make_optimiser(model, cfg)
    data = WindowDataset(
        store, train, cfg.data, augment=False, snapshot=snapshot, whole_domain_multiple=1
    )
    loss_of = Loss(cfg, CPU)
    n_in, n_out = cfg.data.frames_in, cfg.data.frames_out
    order = np.random.default_rng(cfg.data.seed)
    step, started = 0, time.perf_counter()
    while step < steps:
        items = (Sample(*(t[None] for t in data[i])) for i in order.permutation(len(data)))
        for samples in groups_of(items, cfg.prior_batch):
            prior_step(
                model, optimiser, samples, loss_of, n_in, n_out, CPU, cfg.optimiser.clip_norm
            )
            step += 1
            if step == steps:
                break
    return model, (time.perf_counter() - started) / steps


def describe(model: MotionRNN) -> str:
    """The learned parameters: gains by level (mean over leads), the blend, trend, damping."""
    state = {k: v.detach() for k, v in model.prior.state_dict().items()}
    parts = []
    for name, value in state.items():
        if value.ndim == 2:
            value = value.mean(dim=0)
        parts.append(f"{name} " + " ".join(f"{float(v):+.3f}" for v in value.flatten()[:12]))
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--archive", type=Path, required=True, help="ingested here if absent")
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        help="NAME=SETTING;SETTING (configuration overrides, as motioncast --set)",
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--windows", type=int, default=15, help="test windows scored")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if not args.archive.exists():
        ingest_real(args.data, args.archive)
    cfg = load_config(None, TRAINING).training
    archive = Archive(args.archive)
    test = collect_windows(archive, archive.head(), cfg)["test"]
    test = spread([w for w in test if w.domain in FIVE_MINUTE], args.windows)
    models = {}
    for spec in args.variant:
        name, _, settings = spec.partition("=")
        model, rate = train_prior(args.archive, [s for s in settings.split(";") if s], args.steps)
        print(f"{name}: {args.steps} steps, {rate:.1f} s a step; {describe(model)}", flush=True)
        models[name] = model
    scores = score_models(str(args.archive), test, models, cfg, baselines=["sprog"])
    means = {k: s.summary() for k, s in scores.items()}
    print(f"\n{len(test)} test windows (RMI, FMI), mean over leads 5-60 min; ratio to S-PROG")
    print(f"{'variant':<14}" + "".join(f"{m:>20}" for m in METRICS))
    for name, summary in means.items():
        row = []
        for metric in METRICS:
            value = np.nanmean(np.array(summary["per_lead"][metric][:LEADS], float))
            base = np.nanmean(np.array(means["sprog"]["per_lead"][metric][:LEADS], float))
            row.append(f"{value:.4f} ({value / base:.3f})")
        print(f"{name:<14}" + "".join(f"{r:>20}" for r in row))


if __name__ == "__main__":
    main()
