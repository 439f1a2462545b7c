"""Forecast skill on the real composites: MotionRNN against S-PROG, extrapolation and persistence.

    .venv/bin/python bench/skill.py [--data DIR] [--pretrain-minutes 20] [--minutes 35]
                                    [--workers 2] [--ablation] [--out DIR] [--evaluate-only]

1. Ingest the KNMI, RMI, MeteoSwiss (two events) and FMI composite series (../shared/data/radar,
   or $MOTIONCAST_RADAR_DATA) into an archive: domains knmi, rmi, mch and fmi, in mm/h.
2. Pre-train (optional, --pretrain-minutes 0 skips) on the synthetic storm: 24 h on a 256 x 256,
   1 km grid, no radar in between.
3. Train on the real archive from the pre-trained weights (fine-tuning: no warm-up): windows of
   6 + 12 frames (30 min in, 5-60 min leads), split by the project's rules (a hash of each
   4-hour block's start and the seed, one window of gap between splits); the registered model
   is the best validation checkpoint.
4. Score the held-out test windows on whole domains, every method on the same cells (observed,
   and valued by every method): CSI at 1, 5 and 10 mm/h (event: > threshold), FSS at 1 and
   5 mm/h (10 km), MAE, per lead; mean CSI at 1 mm/h per source.
5. Another time step: the RMI and FMI series (never trained or validated on: training is
   MeteoSwiss, validation KNMI) taken every 10 minutes, domains rmi-10min and fmi-10min; the
   same model forecasts 6 steps of 10 minutes from 6 frames, its motion prior and the
   baselines' in cells per 10 minutes; every complete window scored, per source.

With ``--ablation`` the same budget also trains the plain PredRNN base (advective output, no
MotionGRU or highway) and the direct-output MotionRNN (the paper's), scored beside it.
Both training stages run through ``motioncast train``'s runner with Ray Train (2 CPU workers
here); the budgets are wall-clock minutes of this machine. Goal: MotionRNN beats persistence
and extrapolation at every lead at 1 mm/h, reaches 1.10 x extrapolation's mean CSI at 1 mm/h
and at least matches it at 5 mm/h.
"""

from __future__ import annotations

import argparse
import json
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
SOURCES = ["composites/KNMI", "composites/rmi", "composites/mch", "composites/fmi"]
PRETRAIN = [
    "training.data.block_hours=4",
    "training.data.crop=96",
    "training.steps_per_epoch=100",
    "training.max_steps=100000",
    "training.validation_windows=12",
    "training.optimiser.lr=0.001",
]
# the split seed (shares 0.5 / 0.2 / 0.3, 4-hour blocks) whose test blocks hold three sources:
# train mch (both events), validation knmi 00-04 h, test knmi 04-08 h, rmi and fmi
REAL = [
    "training.data.block_hours=4",
    "training.data.split=[0.5,0.2,0.3]",
    "training.data.seed=40",
    "training.data.crop=96",
    "training.steps_per_epoch=100",
    "training.max_steps=100000",
    "training.validation_windows=12",
    "training.optimiser.lr=0.0003",
]
VARIANTS = {  # name -> model settings; the first is the benchmark's MotionRNN
    "motionrnn": [],
    "predrnn": ["training.model.motion=false"],
    "motionrnn-frame": ["training.model.output=frame", "training.sampling.method=reverse"],
}
BASELINES = ["sprog", "extrapolation", "persistence"]
COARSER = ("rmi", "fmi")  # sources the benchmark's split keeps out of training and validation
COARSER_STEP = 10  # minutes
METRICS = ("csi_1mm", "csi_5mm", "csi_10mm", "fss_1mm_10", "fss_5mm_10", "mae")


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
    card = result.version.card
    print(
        f"{name}: {result.state.step} steps in {(time.perf_counter() - start) / 60:.1f} min; "
        f"registered {result.version.version}, the best validation at step {card['best_step']} "
        f"(CSI 1 mm/h {result.state.best['score']}, extrapolation "
        f"{card['validation']['extrapolation']['csi_1mm']})"
    )
    return result


def train_variant(args, root: Path, real: Path, synthetic: Path | None, settings: list[str]):
    """One model trained with the benchmark's budget: pre-training, then fine-tuning."""
    name = settings[0]
    extra = list(REAL) + settings[1:]
    if synthetic is not None:
        pre = run(
            synthetic,
            root,
            f"{name}-pretrain",
            args.pretrain_minutes,
            args.workers,
            PRETRAIN + settings[1:],
        )
        extra.append(f"training.init_checkpoint={pre.version.checkpoint}")
    return run(real, root, f"{name}-real", args.minutes, args.workers, extra)


def trained(root: Path, chosen: dict) -> dict[str, Path]:
    """The registered checkpoint of each variant's real run in ``root``'s registry."""
    from pipelines.registry import Registry

    runs = {v.card["run"]: v.checkpoint for v in Registry(root / "registry").versions()}
    return {name: runs[f"{name}-real"] for name in chosen}


def evaluate(store: Path, checkpoints: dict[str, Path]) -> tuple[dict, dict]:
    """Scores of every model and baseline on the test windows: pooled, and by source."""
    from motionrnn import load_checkpoint
    from pipelines.config import load_config
    from pipelines.store.archive import Archive
    from pipelines.training.evaluate import score_models
    from pipelines.training.run import collect_windows

    t = load_config(None, REAL).training
    archive = Archive(store)
    test = collect_windows(archive, archive.head(), t)["test"]
    models = {name: load_checkpoint(path) for name, path in checkpoints.items()}
    by_source: dict[str, dict] = {}
    pooled: dict = {}
    for domain in sorted({w.domain for w in test}):
        windows = [w for w in test if w.domain == domain]
        print(f"scoring {len(windows)} test windows of {domain}")
        scores = score_models(str(store), windows, models, t, baselines=BASELINES)
        by_source[domain] = {k: s.summary() for k, s in scores.items()}
        pooled = {k: pooled[k].merge(s) if k in pooled else s for k, s in scores.items()}
    return {k: s.summary() for k, s in pooled.items()}, by_source


def coarser_archive(real: Path, store: Path) -> None:
    """The COARSER sources on a 10-minute step: their frames at whole 10 minutes."""
    from pipelines.frame import Frame
    from pipelines.grid import Grid
    from pipelines.store import Archive
    from pipelines.store.archive import open_archive

    frames = []
    for domain in COARSER:
        ds = open_archive(str(real), domain)
        grid = Grid.from_coords(ds.crs.attrs["crs_wkt"], ds.x.values, ds.y.values)
        for i, stamp in enumerate(pd.DatetimeIndex(ds.time.values)):
            if ds.present.values[i] and stamp.minute % COARSER_STEP == 0:
                frames.append(
                    Frame(
                        f"{domain}-{COARSER_STEP}min",
                        stamp,
                        grid,
                        ds.precip.isel(time=i).values,
                        str(ds.source_files.values[i]),
                        str(ds.source_sha256.values[i]),
                        "subsampled",
                        time_step_minutes=COARSER_STEP,
                    )
                )
    Archive(store, create=True).write(frames, f"{COARSER} every {COARSER_STEP} minutes")


def evaluate_coarser(store: Path, checkpoint: Path) -> dict:
    """Scores on every complete 6 + 6 window of the 10-minute series, by source."""
    from motionrnn import load_checkpoint
    from pipelines.config import load_config
    from pipelines.store.archive import Archive
    from pipelines.training.evaluate import score_models
    from pipelines.training.run import collect_windows

    settings = [*REAL, "training.data.frames_out=6", "training.data.gap_windows=0"]
    t = load_config(None, settings).training
    archive = Archive(store)
    every = [w for ws in collect_windows(archive, archive.head(), t).values() for w in ws]
    model = {"motionrnn": load_checkpoint(checkpoint)}
    out = {}
    for domain in sorted({w.domain for w in every}):
        windows = [w for w in every if w.domain == domain]
        print(f"scoring {len(windows)} windows of {domain}")
        scores = score_models(str(store), windows, model, t, baselines=BASELINES)
        out[domain] = {k: s.summary() for k, s in scores.items()}
    return out


def report_coarser(by_source: dict[str, dict]) -> None:
    for source, scores in by_source.items():
        leads = len(scores["motionrnn"]["per_lead"]["csi_1mm"])
        print(f"\n{source}: csi_1mm per lead (minutes)")
        steps = " ".join(f"{COARSER_STEP * (k + 1):>6d}" for k in range(leads))
        print(f"method           {steps}    mean")
        for method, s in scores.items():
            values = np.array([np.nan if v is None else v for v in s["per_lead"]["csi_1mm"]])
            row = " ".join(f"{v:6.3f}" for v in values)
            print(f"{method:<16} {row}  {np.nanmean(values):6.3f}")


def report(scores: dict[str, dict], by_source: dict[str, dict], main: str) -> None:
    leads = len(scores[main]["per_lead"]["mae"])
    for metric in METRICS:
        print(f"\n{metric} per lead (minutes)")
        print(
            "method           " + " ".join(f"{5 * (k + 1):>6d}" for k in range(leads)) + "    mean"
        )
        for method, s in scores.items():
            values = np.array([np.nan if v is None else v for v in s["per_lead"][metric]])
            row = " ".join(f"{v:6.3f}" for v in values)
            print(f"{method:<16} {row}  {np.nanmean(values):6.3f}")
    print("\nmean CSI 1 mm/h over the leads, by source")
    methods = list(scores)
    print("source   " + " ".join(f"{m:>16}" for m in methods))
    for source, s in by_source.items():
        means = [np.nanmean(np.array(s[m]["per_lead"]["csi_1mm"], float)) for m in methods]
        print(f"{source:<8} " + " ".join(f"{v:16.3f}" for v in means))

    def curve(method: str, metric: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in scores[method]["per_lead"][metric]])

    model, ext, per = (curve(m, "csi_1mm") for m in (main, "extrapolation", "persistence"))
    print(
        f"\n{main} > persistence at every lead (CSI 1 mm/h): {bool(np.all(model > per))}; "
        f"> extrapolation at every lead: {bool(np.all(model > ext))}"
    )
    for metric in ("csi_1mm", "csi_5mm"):
        m, e = np.nanmean(curve(main, metric)), np.nanmean(curve("extrapolation", metric))
        print(f"mean {metric}: {main} {m:.3f}, extrapolation {e:.3f}, ratio {m / e:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--pretrain-minutes", type=float, default=20.0)
    parser.add_argument("--minutes", type=float, default=35.0, help="training on real data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ablation", action="store_true", help="also the two ablation models")
    parser.add_argument("--out", type=Path, help="keep archives, runs, registry, scores here")
    parser.add_argument(
        "--evaluate-only", action="store_true", help="score the models already trained in --out"
    )
    args = parser.parse_args()
    if args.evaluate_only and args.out is None:
        parser.error("--evaluate-only needs --out")
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-skill-") as tmp:
        root = args.out or Path(tmp)
        real = root / "real-archive"
        chosen = VARIANTS if args.ablation else dict(list(VARIANTS.items())[:1])
        if args.evaluate_only:
            checkpoints = trained(root, chosen)
        else:
            ingest_real(args.data, real)
            synthetic = None
            if args.pretrain_minutes > 0:
                synthetic = root / "synthetic-archive"
                synthetic_archive(synthetic)
            ray.init(num_cpus=args.workers, log_to_driver=False)
            checkpoints = {
                name: train_variant(args, root, real, synthetic, [name, *s]).version.checkpoint
                for name, s in chosen.items()
            }
            ray.shutdown()
        scores, by_source = evaluate(real, checkpoints)
        coarser = root / f"archive-{COARSER_STEP}min"
        if not coarser.exists():
            coarser_archive(real, coarser)
        other_step = evaluate_coarser(coarser, checkpoints["motionrnn"])
        if args.out:
            (args.out / "scores.json").write_text(
                json.dumps(
                    {"pooled": scores, "by_source": by_source, "coarser": other_step}, indent=1
                )
            )
    report(scores, by_source, "motionrnn")
    report_coarser(other_step)
    print(f"\nwhole benchmark: {(time.perf_counter() - started) / 60:.1f} min wall clock")


if __name__ == "__main__":
    main()
