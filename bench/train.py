"""Training throughput with 1 and 2 Ray Train workers, and the data path's rate, in one run.

    .venv/bin/python bench/train.py [--steps 12] [--hours 12] [--gpu]

The archive: ``hours`` of the synthetic storm on a 256 x 256, 1 km domain (no radar), in a
temporary Icechunk store with the default chunking. The configuration is the default one
(MotionRNN 2 x 32, crops 128 x 128, 6 + 12 frames, batch 8 per worker).

- data path: the training ``WindowDataset`` + ``WeightedWindowSampler`` + ``DataLoader`` as a
  worker runs them (default: read in the training process), alone: samples per second;
- training: ``motioncast train``'s runner with 1 and with 2 CPU workers (or 1 GPU with bf16,
  with --gpu), ``steps`` optimiser steps: samples per second from the training loop's own clock
  (Ray start-up and validation excluded), and per worker.

Prints the ratio data-path rate / training rate of one worker (goal: >= 5: the data path must
keep up with the model with room to spare). Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch


def build_archive(root: Path, hours: int) -> Path:
    from pipelines.grid import Grid
    from pipelines.simulate import truth_frames
    from pipelines.store import Archive

    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + 256e3, 3.0e6 + 256e3), 1000.0)
    path = root / "archive"
    frames = truth_frames("bench", grid, pd.Timestamp("2026-06-01"), hours * 60, seed=1)
    Archive(path, create=True).write(list(frames), "bench archive")
    return path


def data_rate(store: Path, batches: int) -> float:
    """Samples per second of the training data path alone (as one worker runs it)."""
    from pipelines.config import load_config
    from pipelines.store.archive import Archive
    from pipelines.training.dataset import WindowDataset
    from pipelines.training.run import collect_windows
    from pipelines.training.sampler import WeightedWindowSampler

    cfg = load_config().training
    archive = Archive(store)
    windows = collect_windows(archive, archive.head(), cfg)["train"]
    data = WindowDataset(store, windows, cfg.data, augment=True, snapshot=archive.head())
    sampler = WeightedWindowSampler([w.weight for w in windows], batches * cfg.batch_size, 0, 0)
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, sampler=sampler)
    data[0]  # open the store outside the clock, as a worker does before its first step
    start = time.perf_counter()
    n = sum(len(x) for x, _, _ in loader)
    return n / (time.perf_counter() - start)


def training_rate(
    store: Path, root: Path, workers: int, steps: int, gpu: bool
) -> tuple[float, float | None]:
    """Samples per second of ``workers`` training together (all workers' samples), and the
    peak GPU memory of rank 0 (GiB; None on CPU)."""
    from pipelines.config import load_config
    from pipelines.training.run import train

    cfg = load_config(
        None,
        [
            f"training.scaling.workers={workers}",
            f"training.scaling.use_gpu={str(gpu).lower()}",
            f"training.scaling.storage={root / 'runs'}",
            f"training.max_steps={steps}",
            f"training.steps_per_epoch={steps}",
            "training.validation_windows=1",
            "training.validation_area=crop",
        ],
    )
    result = train(store, root / f"registry{workers}", cfg, run_name=f"bench-{workers}")
    last = result.state.history[-1]
    seconds = last["elapsed_s"]  # training steps only, before the validation
    return steps * cfg.training.batch_size * workers / seconds, last.get("gpu_peak_gib")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps per training run")
    parser.add_argument("--hours", type=int, default=12, help="hours of synthetic archive")
    parser.add_argument("--batches", type=int, default=30, help="batches for the data path")
    parser.add_argument("--gpu", action="store_true", help="train on 1 GPU (bf16) instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        store = build_archive(root, args.hours)
        data = data_rate(store, args.batches)
        ray.init(num_cpus=2, num_gpus=1 if args.gpu else 0, log_to_driver=False)
        worker_counts = [1] if args.gpu else [1, 2]
        rates = {w: training_rate(store, root, w, args.steps, args.gpu) for w in worker_counts}
        ray.shutdown()
    device = "1 GPU, bf16" if args.gpu else "CPU"
    print(f"data path (1 process, batch 8 of 128 x 128 x 18 frames): {data:7.1f} samples/s")
    for w, (rate, peak) in rates.items():
        memory = f", peak GPU memory {peak:.2f} GiB" if peak is not None else ""
        per = f"({rate / w:.2f} per worker){memory}"
        print(f"training, {w} worker(s) on {device}: {rate:7.2f} samples/s {per}")
    one = rates[1][0]
    print(f"ratio data path / training (1 worker): {data / one:6.1f}  (goal >= 5)")
    if 2 in rates:
        two = rates[2][0]
        print(f"ratio data path / training per worker (2 workers): {data / (two / 2):6.1f}")
        print(f"scaling 2 workers / 1: {two / one:.2f}x")


if __name__ == "__main__":
    main()
