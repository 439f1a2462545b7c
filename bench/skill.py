"""Forecast skill on every visible real event: the MotionRNN on its S-PROG prior against pysteps.

    PYTHONPATH=. .venv/bin/python bench/skill.py [--data DIR] [--minutes 60] [--workers 2]
        [--linda 2] [--ablation] [--ablation-minutes M] [--out DIR] [--train-only | --evaluate-only]

1. Ingest every event of the real composites ($MOTIONCAST_RADAR_DATA or ../shared/data/radar)
   into one archive: KNMI 2010, MeteoSwiss 2015 and 2016, RMI 2021, FMI 2016 (5 minutes),
   OPERA 2018 cut to the Alps (15 minutes), MRMS 2019 cut to the Gulf coast (2 minutes).
2. Split by event (``training.data.events``): KNMI and MeteoSwiss 2015 train, MeteoSwiss 2016
   validates, RMI, FMI, OPERA and MRMS test: no event trains and tests, and the test radars
   are radars the model never saw.
3. Train with motioncast's own runner (Ray Train, --workers CPU workers) for --minutes in all:
   the prior's stage on whole domains, then the recurrent stack's on crops; the registered
   model is the best validation checkpoint, its card holds the paired test against S-PROG.
4. Score every test window on its whole domain, every method on the same cells (observed, and
   valued by every method): the trained model ('motionrnn'), its learned prior alone (the
   stack's head at zero: 'prior-stage'), the untrained model (S-PROG in PyTorch:
   'untrained'), pysteps S-PROG, extrapolation and persistence. Per event and pooled over the
   5-minute events, per lead and the mean over the leads up to 60 minutes; ratios to S-PROG;
   a paired bootstrap of the model against S-PROG over the test windows.
5. LINDA (pysteps, deterministic), the anchor above S-PROG, on --linda windows of each
   5-minute test event (about 3 minutes a forecast on two cores), with the others on them.
6. --ablation: the PredRNN base (no MotionGRU) on the same S-PROG prior, trained the same way
   (the prior's stage, then the stack's), and the old model on the extrapolation prior (output
   'advective'), each with the same budget (or --ablation-minutes).

--out DIR keeps the archive, the runs and the registry there (a run already registered there is
not trained again: --ablation can follow a first run), so that
``motioncast forecast --registry DIR/registry --method motionrnn`` issues the trained model's
forecasts on any other archive exactly as the cycle would. Training and scoring take about an
hour and a half each on two cores: --train-only and --evaluate-only split them, and each test
event's scores are kept in DIR/scores-by-event once scored (a scoring cut short resumes at the
next event; the scores of other checkpoints or windows are not reused).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(
    os.environ.get(
        "MOTIONCAST_RADAR_DATA", Path(__file__).resolve().parents[2] / "shared/data/radar"
    )
)
SOURCES = [
    "composites/KNMI",
    "composites/mch",
    "composites/rmi",
    "composites/fmi",
    "composites/opera/20180824",
    "composites/mrms/2019/06/10",
]
REGIONS = [  # OPERA and MRMS cut to a region each (their whole grids are continents)
    'domains.alps={source: opera, bbox: [5.0, 44.0, 17.0, 49.0], bbox_crs: "EPSG:4326"}',
    "domains.gulf={source: mrms, bbox: [-92.0, 25.0, -86.0, 30.0]}",
]
EVENTS = {  # event -> split; the rest trains
    "mch@2016-07-11": "validation",
    "rmi": "test",
    "fmi": "test",
    "alps": "test",
    "gulf": "test",
}
FIVE_MINUTE = ("rmi", "fmi")  # the test events pooled lead by lead
TRAINING = [
    f"training.data.events={json.dumps(EVENTS)}",
    "training.data.gap_windows=0",
    "training.data.crop=128",
    "training.steps_per_epoch=25",
    "training.max_steps=100000",
    "training.validation_windows=12",
    "training.optimiser.lr=0.0003",
]
VARIANTS = {  # name -> settings; the first is the benchmark's model
    "motionrnn": [],
    "predrnn": ["training.model.motion=false"],
    "advective": ["training.model.output=advective"],
}
BASELINES = ["sprog", "extrapolation", "persistence"]
METRICS = ("csi_1mm", "csi_5mm", "csi_10mm", "fss_1mm_10", "fss_5mm_10", "mae")
HORIZON_MINUTES = 60


def ingest_real(data: Path, store: Path) -> None:
    from pipelines.config import load_config
    from pipelines.ingest import ingest

    missing = [s for s in SOURCES if not (data / s).is_dir()]
    if missing:
        raise SystemExit(f"{data}: missing {', '.join(missing)} (set MOTIONCAST_RADAR_DATA)")
    cfg = load_config(None, [f"stores.archive.location={store}", *REGIONS])
    result = ingest([data / s for s in SOURCES], cfg)
    print(f"ingested {sum(result.added.values())} real frames: {dict(result.added)}")


def run(store: Path, root: Path, name: str, minutes: float, workers: int, extra: list[str]):
    from pipelines.config import load_config
    from pipelines.training.run import train

    cfg = load_config(
        None,
        [
            f"training.scaling.workers={workers}",
            f"training.scaling.storage={root / 'runs'}",
            f"training.max_minutes={minutes}",
            *TRAINING,
            *extra,
        ],
    )
    start = time.perf_counter()
    result = train(store, root / "registry", cfg, run_name=name)
    card = result.version.card
    paired = card["validation"]["model"].get("paired") or {}
    test = (
        f"; paired {paired['difference']:+.3f} [{paired['lower']:+.3f}, {paired['upper']:+.3f}]"
        if paired
        else ""
    )
    print(
        f"{name}: {result.state.step} steps in {(time.perf_counter() - start) / 60:.1f} min; "
        f"registered {result.version.version}, the best validation at step {card['best_step']} "
        f"(CSI 1 mm/h {result.state.best['score']}, "
        f"S-PROG {card['validation']['sprog']['csi_1mm']}{test})"
    )
    return result


def trained(root: Path) -> dict[str, Path]:
    """The registered checkpoint of each run in ``root``'s registry, by run name."""
    from pipelines.registry import Registry

    return {v.card["run"]: v.checkpoint for v in Registry(root / "registry").versions()}


def models_to_score(checkpoints: dict[str, Path]) -> dict:
    """The trained models and their ablations: the learned prior alone, the untrained model."""
    import torch

    from motionrnn import MotionRNN, load_checkpoint

    main = load_checkpoint(checkpoints["motionrnn"])
    prior_stage = load_checkpoint(checkpoints["motionrnn"])
    with torch.no_grad():
        prior_stage.head.weight.zero_()
    models = {"motionrnn": main, "prior-stage": prior_stage, "untrained": MotionRNN(main.config)}
    for name in ("predrnn", "advective"):
        if name in checkpoints:
            models[name] = load_checkpoint(checkpoints[name])
    return models


def test_windows(store: Path):
    from pipelines.config import load_config
    from pipelines.store.archive import Archive
    from pipelines.training.run import collect_windows

    t = load_config(None, TRAINING).training
    archive = Archive(store)
    return t, collect_windows(archive, archive.head(), t)["test"]


def evaluate(
    store: Path,
    models: dict,
    baselines: list[str],
    per_event: int | None = None,
    cache: Path | None = None,
    origin: dict[str, str] | None = None,
):
    """Scores by event (every test window, or ``per_event`` spread over each 5-minute event)
    and pooled over the 5-minute events, with their per-window counts (the paired test).
    ``cache``: each event's scores are kept there once scored, under the methods and the
    checkpoints they came from (``origin``), so that an evaluation cut short resumes at the
    next event."""
    from pipelines.training.evaluate import score_models

    t, windows = test_windows(store)
    by_event, pooled, counts = {}, {}, {}
    for domain in sorted({w.domain for w in windows}):
        chosen = [w for w in windows if w.domain == domain]
        if per_event is not None:
            if domain not in FIVE_MINUTE:
                continue
            chosen = chosen[:: max(1, len(chosen) // per_event)][:per_event]
        key = {
            "windows": [w.time.isoformat() for w in chosen],
            "models": sorted(models),
            "origin": origin,
            "baselines": baselines,
        }
        kept = cache / f"{domain}-{len(chosen)}.pkl" if cache else None
        if kept and kept.exists() and (held := pickle.loads(kept.read_bytes()))["key"] == key:
            print(f"{len(chosen)} test windows of {domain}: scores kept in {kept}", flush=True)
            scores, found = held["scores"], held["counts"]
        else:
            print(f"scoring {len(chosen)} test windows of {domain}", flush=True)
            found = {}
            scores = score_models(str(store), chosen, models, t, baselines=baselines, counts=found)
            if kept:
                kept.parent.mkdir(parents=True, exist_ok=True)
                partial = kept.with_suffix(".partial")  # whole or absent, if cut while writing
                partial.write_bytes(pickle.dumps({"key": key, "scores": scores, "counts": found}))
                partial.replace(kept)
        by_event[domain] = scores
        if domain in FIVE_MINUTE:
            pooled = {k: pooled[k].merge(s) if k in pooled else s for k, s in scores.items()}
            counts = {
                k: np.concatenate([counts[k], c]) if k in counts else c for k, c in found.items()
            }
    return by_event, pooled, counts


def mean_over_leads(summary: dict, metric: str, step_minutes: int) -> float:
    leads = int(HORIZON_MINUTES // step_minutes)
    values = np.array([np.nan if v is None else v for v in summary["per_lead"][metric]], float)
    return float(np.nanmean(values[:leads]))


def report(title: str, scores: dict, step_minutes: int) -> dict:
    """Per-lead rows of every metric and the mean over leads; returns the means."""
    summaries = {k: s.summary() for k, s in scores.items()}
    leads = min(len(next(iter(summaries.values()))["per_lead"]["mae"]), 60 // step_minutes)
    means = {
        m: {k: mean_over_leads(s, m, step_minutes) for k, s in summaries.items()} for m in METRICS
    }
    print(f"\n=== {title} (leads {step_minutes}-{leads * step_minutes} min)")
    for metric in METRICS:
        print(
            f"{metric:<16}"
            + " ".join(f"{step_minutes * (k + 1):>6d}" for k in range(leads))
            + "    mean  / S-PROG"
        )
        for method, s in summaries.items():
            values = np.array([np.nan if v is None else v for v in s["per_lead"][metric]], float)
            mean, base = means[metric][method], means[metric]["sprog"]
            print(
                f"  {method:<14}"
                + " ".join(f"{v:6.3f}" for v in values[:leads])
                + f"  {mean:6.3f}  {mean / base if base else np.nan:6.3f}"
            )
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget in all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--linda", type=int, default=2, help="windows a 5-minute event; 0: none")
    parser.add_argument("--ablation", action="store_true", help="also PredRNN and the old model")
    parser.add_argument(
        "--ablation-minutes", type=float, help="each ablation's budget (default: --minutes)"
    )
    parser.add_argument("--out", type=Path, help="keep archive, runs, registry and scores here")
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--evaluate-only", action="store_true", help="score the models already trained in --out"
    )
    only.add_argument(
        "--train-only", action="store_true", help="train into --out, score later (--evaluate-only)"
    )
    args = parser.parse_args()
    if (args.evaluate_only or args.train_only) and args.out is None:
        parser.error("--evaluate-only and --train-only need --out")
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from pipelines.scoring.bootstrap import paired_bootstrap

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-skill-") as tmp:
        root = args.out or Path(tmp)
        real = root / "real-archive"
        if not args.evaluate_only:
            if not real.exists():
                ingest_real(args.data, real)
            done = trained(root)  # runs already in --out's registry are not trained again
            ray.init(num_cpus=args.workers, log_to_driver=False)
            if "motionrnn" not in done:
                run(real, root, "motionrnn", args.minutes, args.workers, [])
            if args.ablation:
                minutes = args.ablation_minutes or args.minutes
                for name in ("predrnn", "advective"):
                    if name not in done:
                        run(real, root, name, minutes, args.workers, VARIANTS[name])
            ray.shutdown()
            if args.train_only:
                return
        checkpoints = trained(root)
        models = models_to_score(checkpoints)
        kept = {
            "cache": root / "scores-by-event",
            "origin": {k: str(v) for k, v in checkpoints.items()},
        }
        by_event, pooled, counts = evaluate(real, models, BASELINES, **kept)
        steps = {"rmi": 5, "fmi": 5, "alps": 15, "gulf": 2}
        means = {"pooled 5-minute events": report("pooled: RMI and FMI", pooled, 5)}
        for event, scores in by_event.items():
            means[event] = report(event, scores, steps[event])
        if args.linda:
            _, anchor, _ = evaluate(
                real, {"motionrnn": models["motionrnn"]}, [*BASELINES, "linda"], args.linda, **kept
            )
            means["linda subsample"] = report("LINDA subsample (5-minute events)", anchor, 5)
        for name in [n for n in models if n != "untrained"]:
            test = paired_bootstrap(counts[name], counts["sprog"])
            means["pooled 5-minute events"][f"paired {name} - sprog"] = test
            print(
                f"paired bootstrap over {test['windows']} test windows, mean CSI 1 mm/h, "
                f"{name} - S-PROG: {test['difference']:+.4f} "
                f"[{test['lower']:+.4f}, {test['upper']:+.4f}]"
            )
        if args.out:
            (args.out / "scores.json").write_text(json.dumps(means, indent=1))
    pooled_means = means["pooled 5-minute events"]
    m = {k: pooled_means[k]["motionrnn"] / pooled_means[k]["sprog"] for k in METRICS}
    print(
        f"\nmotionrnn / S-PROG, pooled 5-minute test events: CSI 1 mm/h {m['csi_1mm']:.3f} "
        f"(goal >= 1.00), CSI 5 mm/h {m['csi_5mm']:.3f} (goal >= 1.05), FSS 1 mm/h "
        f"{m['fss_1mm_10']:.3f}, FSS 5 mm/h {m['fss_5mm_10']:.3f} (goal >= 1.00)"
    )
    print(f"whole benchmark: {(time.perf_counter() - started) / 60:.1f} min wall clock")


if __name__ == "__main__":
    main()
