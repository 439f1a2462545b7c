"""Forecast skill on the real composites: MotionRNN against pysteps extrapolation and persistence.

    .venv/bin/python bench/skill.py [--data DIR] [--pretrain-minutes 20] [--minutes 25]
                                    [--workers 2] [--out DIR]

1. Ingest the KNMI, RMI and both MeteoSwiss composite series (../shared/data/radar, or
   $MOTIONCAST_RADAR_DATA) into an archive: domains knmi, rmi and mch, in mm/h.
2. Pre-train (optional, --pretrain-minutes 0 skips) on the synthetic storm: 24 h on a 256 x 256,
   1 km grid, no radar in between.
3. Train on the real archive from the pre-trained weights: windows of 6 + 12 frames (30 min in,
   5-60 min leads), split by 2-hour blocks into train / validation / test (seeded, per domain).
4. Score the held-out test windows on whole domains: CSI at 1 and 5 mm/h and MAE per lead for
   the model, pysteps extrapolation (Lucas-Kanade on the last 4 frames, semi-Lagrangian) and
   Eulerian persistence, on the same cells (observed, and where every forecast has a value).

Both training stages run through ``motioncast train``'s runner with Ray Train (2 CPU workers
here). Goal: the model beats persistence at every lead and matches or beats extrapolation on
CSI at 1 mm/h averaged over the leads. The budget is wall-clock minutes of this machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(
    os.environ.get(
        "MOTIONCAST_RADAR_DATA", Path(__file__).resolve().parents[2] / "shared/data/radar"
    )
)
SOURCES = ["composites/KNMI", "composites/rmi", "composites/mch"]
PRETRAIN = [
    "training.data.block_hours=2",
    "training.data.crop=96",
    "training.steps_per_epoch=100",
    "training.max_steps=100000",
    "training.validation_windows=16",
]
REAL = [
    "training.data.block_hours=2",
    "training.data.split=[0.6,0.15,0.25]",
    "training.data.seed=2",  # the split seed whose test blocks hold all three sources
    "training.data.crop=96",
    "training.steps_per_epoch=50",
    "training.max_steps=100000",
    "training.validation_windows=16",
]


def ingest_real(data: Path, store: Path) -> None:
    from pipelines.config import load_config
    from pipelines.ingest import ingest

    missing = [s for s in SOURCES if not (data / s).is_dir()]
    if missing:
        raise SystemExit(f"{data}: missing {', '.join(missing)} (set MOTIONCAST_RADAR_DATA)")
    cfg = load_config(None, [f"store.archive={store}"])
    result = ingest([data / s for s in SOURCES], cfg)
    print(f"ingested {sum(result.added.values())} real frames: {dict(result.added)}")


def synthetic_archive(store: Path) -> None:
    from pipelines.grid import Grid
    from pipelines.simulate import truth_frames
    from pipelines.store import Archive

    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + 256e3, 3.0e6 + 256e3), 1000.0)
    frames = truth_frames("synthetic", grid, pd.Timestamp("2026-06-01"), 24 * 60, seed=7)
    Archive(store, create=True).write(list(frames), "synthetic pre-training data")


def run(store: Path, root: Path, name: str, minutes: float, workers: int, extra: list[str]):
    from pipelines.config import load_config
    from pipelines.training.run import train

    cfg = load_config(
        None,
        [
            f"training.scaling.workers={workers}",
            f"training.scaling.storage={root / 'runs'}",
            f"training.max_minutes={minutes}",
            *extra,
        ],
    )
    start = time.perf_counter()
    result = train(store, root / "registry", cfg, run_name=name)
    print(f"{name}: {result.state.step} steps in {(time.perf_counter() - start) / 60:.1f} min")
    return result


def evaluate(store: Path, checkpoint: Path, extra: list[str]) -> dict[str, dict]:
    """Scores of the model and the baselines on the test windows, whole domains."""
    import torch

    from motionrnn import load_checkpoint
    from pipelines.config import load_config
    from pipelines.store.archive import Archive
    from pipelines.training.dataset import WindowDataset
    from pipelines.training.run import collect_windows
    from pipelines.training.validation import Validator

    t = load_config(None, extra).training
    archive = Archive(store)
    test = collect_windows(archive, archive.head(), t)["test"]
    print(f"test windows: {pd.Series([w.domain for w in test]).value_counts().to_dict()}")
    model = load_checkpoint(checkpoint)
    data = WindowDataset(store, test, t.data, augment=False, whole_domain_multiple=t.model.patch)
    validator = Validator(data, range(len(test)), t.thresholds_mm_h, batch_size=1)
    torch.set_num_threads(os.cpu_count() or 1)
    return validator.run(model, torch.device("cpu"), amp=False).summary()


def report(scores: dict[str, dict]) -> None:
    leads = len(scores["model"]["per_lead"]["mae"])
    for metric in ("csi_1mm", "csi_5mm", "mae"):
        print(f"\n{metric} per lead (minutes)")
        print("method         " + " ".join(f"{5 * (k + 1):>6d}" for k in range(leads)) + "    mean")
        for method, s in scores.items():
            values = np.array([np.nan if v is None else v for v in s["per_lead"][metric]])
            row = " ".join(f"{v:6.3f}" for v in values)
            print(f"{method:<14} {row}  {np.nanmean(values):6.3f}")
    model, ext, per = (
        np.array(scores[m]["per_lead"]["csi_1mm"], float)
        for m in ("model", "extrapolation", "persistence")
    )
    beats_persistence = bool(np.all(model > per))
    print(f"\nMotionRNN > persistence on CSI 1 mm/h at every lead: {beats_persistence}")
    print(
        f"mean CSI 1 mm/h: MotionRNN {model.mean():.3f}, extrapolation {ext.mean():.3f}, "
        f"persistence {per.mean():.3f}"
    )
    print(f"ratio MotionRNN / extrapolation (mean CSI 1 mm/h): {model.mean() / ext.mean():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--pretrain-minutes", type=float, default=20.0)
    parser.add_argument("--minutes", type=float, default=25.0, help="training on real data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep archives, runs and registry here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-skill-") as tmp:
        root = args.out or Path(tmp)
        real = root / "real-archive"
        ingest_real(args.data, real)
        ray.init(num_cpus=args.workers, log_to_driver=False)
        extra = list(REAL)
        if args.pretrain_minutes > 0:
            synthetic = root / "synthetic-archive"
            synthetic_archive(synthetic)
            pre = run(
                synthetic,
                root,
                "pretrain",
                args.pretrain_minutes,
                args.workers,
                PRETRAIN,
            )
            extra.append(f"training.init_checkpoint={pre.version.checkpoint}")
        tuned = run(real, root, "real", args.minutes, args.workers, extra)
        ray.shutdown()
        scores = evaluate(real, tuned.version.checkpoint, extra)
    report(scores)
    print(f"\nwhole benchmark: {(time.perf_counter() - started) / 60:.1f} min wall clock")


if __name__ == "__main__":
    main()
