"""Benchmark MotionRNN: inference and training time and peak memory, against pysteps.

Inference: 6 frames in -> 12 out of one channel (rain rate) on each --sizes grid, eager and with
torch.compile (inductor), for the default configuration and the reference recipe (4 x 64, filter 5,
patch 4; here with one channel and 6 -> 12 frames). The default (sprog) model's time is
motioncast's whole inference path: the motion prior (``pipelines.nowcast.motion``), the rain rates
to the model's scale and back, its S-PROG prior and the forecast. Training: one Adam step on a
batch of 128 x 128 sequences: the default configuration on its own 6 + 12 frames (its prior
computed beforehand, as the datasets do), the reference recipe as published (RGB, 4 + 4, with
scheduled sampling). In the same run pysteps' S-PROG nowcast on the same frames (dB transform,
Lucas-Kanade motion, S-PROG) gives the yardstick: ratio = MotionRNN / pysteps S-PROG, goal
<= 1.5 (issue 22); pysteps' extrapolation nowcast is printed beside it.

Each measurement runs in a fresh process. Peak memory: on CPU the growth of the peak resident set
(VmHWM; freed heap trimmed and the peak reset before the timed calls), weights and inputs
excluded; on CUDA torch.cuda.max_memory_allocated, weights included (and bf16 autocast there).
Figures on a busy machine are noisy: compare medians from a quiet one.

    PYTHONPATH=. python bench/model.py                      # full run
    PYTHONPATH=. python bench/model.py --sizes 128 --repeats 1 --compile off --train-batch 2
    PYTHONPATH=. python bench/model.py --device cuda
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from motionrnn import (
    MotionRNN,
    MotionRNNConfig,
    next_frame_loss,
    scheduled_sampling,
    teacher_mask,
)
from pipelines.config import TransformConfig
from pipelines.nowcast.motion import motion_field
from pipelines.nowcast.transform import RainTransform

FRAMES_IN, FRAMES_OUT = 6, 12
RADAR = {"channels": 1, "frames_in": FRAMES_IN, "frames_out": FRAMES_OUT}
PRESETS = {
    "default": (MotionRNNConfig(), MotionRNNConfig()),  # (inference, training) configurations
    "reference": (
        dataclasses.replace(MotionRNNConfig.reference(), **RADAR),
        MotionRNNConfig.reference(),
    ),
}


def rain(frames: int, size: int, channels: int = 1, batch: int = 1, seed: int = 0) -> np.ndarray:
    """(batch, frames, channels, size, size) rain rates in mm/h: Gaussian cells that move."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((batch, frames, channels, size, size), np.float32)
    for b in range(batch):
        for _ in range(6):
            y0, x0 = rng.uniform(0, size, 2)
            vy, vx = rng.uniform(-0.01, 0.01, 2) * size
            peak, width = rng.uniform(2, 30), rng.uniform(0.03, 0.12) * size
            for t in range(frames):
                d2 = (yy - y0 - vy * t) ** 2 + (xx - x0 - vx * t) ** 2
                out[b, t] += peak * np.exp(-d2 / (2 * width**2))
    return out


def peak_rss_mb() -> float:
    """Peak resident set of this process: VmHWM (Linux), else ru_maxrss (lifetime peak)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def reset_peak_rss() -> float:
    """Give freed heap memory back (glibc) and restart the peak from the current resident set
    (Linux); return the new baseline. Elsewhere the peak stays the lifetime peak."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, AttributeError):
        pass
    return peak_rss_mb()


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> list[float]:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


TRANSFORM = RainTransform(TransformConfig())


def model_inputs(
    config: MotionRNNConfig, rates: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1, T, 1, H, W) model-scale frames from mm/h rates (T, 1, H, W), and with context the
    coverage and the motion prior (computed here: it is part of the inference path)."""
    if not config.context:
        return torch.from_numpy(rates[None]).to(device), {}
    scaled = TRANSFORM.forward(rates[:, 0])
    motion = motion_field(rates[:, 0], TransformConfig())
    frames = torch.from_numpy(np.nan_to_num(scaled))[None, :, None].to(device)
    seen = torch.from_numpy(np.isfinite(scaled).astype(np.float32))[None, :, None]
    return frames, {
        "coverage": seen[:, -1].to(device),
        "motion": torch.from_numpy(motion)[None].to(device),
        "seen": seen.to(device),
    }


def measure(task: str, preset: str, size: int, compiled: bool, args: argparse.Namespace) -> dict:
    """Run in a fresh process: time one task and record its peak memory."""
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    infer_config, train_config = PRESETS[preset]
    config = infer_config if task == "inference" else train_config
    model = MotionRNN(config).to(device)
    if compiled:
        if task == "inference":
            torch._inductor.config.freezing = True  # constant-fold weights (inference only)
        model.step = torch.compile(model.step)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    if task == "inference":
        model.eval()
        rates = rain(config.frames_in, size)[0]

        def run() -> None:
            frames, context = model_inputs(config, rates, device)
            with autocast:
                forecast = model.generate(frames, FRAMES_OUT, **context)
            if config.context:
                TRANSFORM.inverse(forecast.float().cpu().numpy())

    else:
        batch, n_in, n_out = args.train_batch, config.frames_in, config.frames_out
        data = torch.from_numpy(rain(n_in + n_out, size, config.channels, batch)).to(device)
        inputs, targets = data[:, :n_in], data[:, n_in:]
        context = {}
        if config.context:
            context = {
                "coverage": torch.ones(batch, 1, size, size, device=device),
                "motion": torch.ones(batch, 2, size, size, device=device),
            }
        if model.prior is not None:  # computed once per window by the datasets, not per step
            with torch.no_grad():
                context["prior"] = model.prior(
                    inputs[:, :, 0],
                    torch.ones_like(inputs[:, :, 0], dtype=torch.bool),
                    context["motion"],
                    n_out,
                )
            teaching = {}
        else:
            teaching = {"targets": targets}
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)
        probabilities = scheduled_sampling(25_000)

        def run() -> None:
            if "targets" in teaching:
                teaching["teacher"] = teacher_mask(probabilities, batch, n_in, n_out, device=device)
            with autocast:
                prediction = model(inputs, n_out, **teaching, **context)
                loss = next_frame_loss(prediction.frames, data, start=prediction.start)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    first = timed(run, 1, sync)[0]  # with torch.compile: compilation
    timed(run, args.warmup, sync)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = reset_peak_rss()
    times = timed(run, args.repeats, sync)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb() - rss_before
    return {
        "seconds": statistics.median(times),
        "first": first,
        "peak_mb": peak,
        "params": sum(p.numel() for p in model.parameters()),
    }


def pysteps_nowcast(size: int, repeats: int, method: str) -> float:
    """Median seconds of pysteps' LK + ``method`` nowcast (12 frames) from 6 rain frames."""
    from pipelines.radar.pysteps_io import motion, nowcasts, quiet, transformation

    frames = rain(FRAMES_IN, size)[0, :, 0].astype(np.float64)
    lucas_kanade, nowcast = motion.get_method("LK"), nowcasts.get_method(method)

    def run() -> None:
        db, _ = transformation.dB_transform(frames, threshold=0.1, zerovalue=-15.0)
        velocity = lucas_kanade(db[-3:])
        with quiet():
            if method == "sprog":
                nowcast(db[-3:], velocity, FRAMES_OUT, precip_thr=-10.0, n_cascade_levels=6)
            else:
                nowcast(frames[-1], velocity, FRAMES_OUT)

    run()
    return statistics.median(timed(run, repeats, lambda: None))


def profile(args: argparse.Namespace) -> None:
    """torch.profiler table of one default-configuration forecast on the first size."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    device = torch.device(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    config = MotionRNNConfig()
    model = MotionRNN(config).to(device).eval()
    frames, context = model_inputs(config, rain(FRAMES_IN, args.sizes[0])[0], device)
    model.generate(frames, FRAMES_OUT, **context)
    with torch_profile(activities=activities) as prof:
        model.generate(frames, FRAMES_OUT, **context)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="inference grids")
    parser.add_argument("--train-size", type=int, default=128)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after the first")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    if args.profile:
        profile(args)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    pysteps = {size: pysteps_nowcast(size, args.repeats, "sprog") for size in args.sizes}
    for size, seconds in pysteps.items():
        extrapolation = pysteps_nowcast(size, args.repeats, "extrapolation")
        print(
            f"pysteps LK + S-PROG, {size} x {size}, 6 -> 12: {seconds:.3f} s "
            f"(LK + extrapolation {extrapolation:.3f} s)"
        )

    tasks = [("inference", p, s) for p in args.presets for s in args.sizes]
    if not args.no_train:
        tasks += [("training", p, args.train_size) for p in args.presets]
    print("training: default on 1 x (6 + 12) frames, reference on 3 x (4 + 4) (its recipe)")
    header = "task       preset     params     grid  compile   median s   first s   peak MB  ratio"
    print(header)
    print("-" * len(header))
    context = multiprocessing.get_context("spawn")
    for task, preset, size in tasks:
        for compiled in modes:
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                r = pool.submit(measure, task, preset, size, compiled, args).result()
            ratio = f"{r['seconds'] / pysteps[size]:6.2f}" if task == "inference" else "     -"
            print(
                f"{task:10} {preset:10} {r['params']:>9,} {size:>5}  {str(compiled):7} "
                f"{r['seconds']:9.3f} {r['first']:9.2f} {r['peak_mb']:9.0f} {ratio}",
                flush=True,
            )


if __name__ == "__main__":
    main()
