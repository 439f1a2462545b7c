"""The forecast service under load: cycle latency, a loopback load test, malformed requests.

    PYTHONPATH=. .venv/bin/python bench/serve.py [--size 512] [--cycles 3] [--gets 500]
                                                 [--posts 100] [--malformed 1000]
                                                 [--model-cpus N] [--compile] [--precision P]

On a synthetic storm archive (one domain of --size x --size, 1 km, 5-minute frames) with an
untrained default MotionRNN promoted (the production model's size and cost; its weights do not
change the time), Ray Serve on 127.0.0.1 (its own local Ray of --model-cpus CPUs, at least 2):

1. Latency from an input frame's commit to its forecast's commit, through the forecast flow
   (Prefect, the same local server for every cycle; one warm-up cycle first) and the Serve app,
   12 leads; against pysteps extrapolation run directly on the same input frames in the same run
   (the motion prior and the nowcast, median of 3; ratio = cycle / extrapolation). Goal: under
   10 s and within 2 x. --model-cpus, --compile and --precision set the model replica.
2. A bounded load test on loopback: --gets GET /v1/forecasts/{domain}/latest at concurrency 8,
   then --posts POST /v1/forecasts (replace: every one a new forecast) at concurrency 4; p50,
   p99 and errors (goal: none).
3. --malformed malformed requests (bad JSON, wrong types, unknown fields, huge bodies, bad
   paths): all 4xx, and the service alive after.

Every request goes to 127.0.0.1 only, in bounded numbers, and the run stops by itself.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

START = pd.Timestamp("2026-06-01T12:00")


def storm_archive(path: Path, size: int, minutes: int):
    """The synthetic storm on a size x size, 1 km grid: (archive, frames by time)."""
    from pipelines.grid import Grid
    from pipelines.simulate import truth_frames
    from pipelines.store import Archive

    x0, y0, edge = 3.9e6, 3.0e6, size * 1e3
    grid = Grid.from_extent("EPSG:3035", (x0, y0, x0 + edge, y0 + edge), 1e3)
    frames = list(truth_frames("bench", grid, START, minutes, seed=7))
    return Archive(path, create=True), frames


def registry_with_default_model(root: Path) -> Path:
    from motionrnn import MotionRNN, MotionRNNConfig, save_checkpoint
    from pipelines.config import MotioncastConfig
    from pipelines.registry import Registry

    save_checkpoint(root / "model.safetensors", MotionRNN(MotionRNNConfig()))
    registry = Registry(root / "registry")
    training = MotioncastConfig().training.model_dump(mode="json", exclude={"model"})
    card = {"run": "bench", "training": training, "validation": {}}
    registry.promote(registry.register(root / "model.safetensors", card).version, force=True)
    return root / "registry"


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000.0
    return f"p50 {np.percentile(ms, 50):7.1f} ms  p99 {np.percentile(ms, 99):7.1f} ms"


def seconds(call, *args) -> float:
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


def n_in_archive(cfg, cycles: int) -> int:
    """Frames in the archive after the warm-up and the timed cycles."""
    return cfg.forecast.frames_in + 1 + cycles


def cycle_latency(cfg, archive, frames, overrides, cycles: int) -> None:
    from flows.forecast import forecast_flow
    from pipelines.forecast.store import ForecastStore
    from pipelines.nowcast.baselines import PystepsNowcaster

    n_in = cfg.forecast.frames_in
    first = n_in_archive(cfg, 0)  # frames in the archive before the timed cycles (one warm-up)
    now = (frames[first - 1].time + pd.Timedelta(minutes=1)).isoformat()
    forecast_flow(overrides=overrides, now=now)  # warm-up: Prefect's server, model, caches
    store = ForecastStore.from_config(cfg.stores)
    extrapolation = PystepsNowcaster("extrapolation", cfg.training.data.transform)
    extrapolation(np.stack([f.precip for f in frames[:n_in]]), 12)  # warm-up: imports, caches
    rows = []
    for k in range(cycles):
        frame = frames[first + k]
        committed = archive.write([frame], f"frame {frame.time}")
        t_commit = pd.Timestamp(dict((s, t) for s, _, t in archive.history())[committed.snapshot])
        (outcome,) = forecast_flow(
            overrides=overrides, now=(frame.time + pd.Timedelta(minutes=1)).isoformat()
        )
        _, message, t_forecast = store.history()[0]
        assert outcome["action"] == "issued" and frame.time.isoformat() in message, outcome
        latency = (t_forecast - t_commit).total_seconds()
        inputs = np.stack([f.precip for f in frames[first + k - n_in + 1 : first + k + 1]])
        direct = statistics.median(seconds(extrapolation, inputs, 12) for _ in range(3))
        rows.append((frame.time, latency, outcome["seconds"], direct))
    print("\n1. input frame commit -> forecast commit (flow + Serve, 12 leads)")
    print(
        f"{'issue time':12s} {'cycle s':>8s} {'of it POST s':>13s} {'pysteps s':>10s} {'ratio':>6s}"
    )
    for when, latency, post, direct in rows:
        print(
            f"{when.strftime('%H:%M'):12s} {latency:8.2f} {post:13.2f} {direct:10.2f} "
            f"{latency / direct:6.2f}"
        )
    cycle, post, direct = (statistics.median(x) for x in list(zip(*rows, strict=True))[1:])
    print(f"{'median':12s} {cycle:8.2f} {post:13.2f} {direct:10.2f} {cycle / direct:6.2f}")


def load_test(url: str, domain: str, gets: int, posts: int, issue_times: list) -> None:
    def timed(call):
        """(seconds, None) or (seconds, what went wrong: status and detail, or the exception)."""
        start = time.perf_counter()
        try:
            response = call()
            error = (
                None if response.status_code < 400 else f"{response.status_code} {response.text}"
            )
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return time.perf_counter() - start, error

    with httpx.Client(base_url=url, timeout=120) as client:
        with ThreadPoolExecutor(8) as pool:
            got = list(
                pool.map(
                    lambda _: timed(lambda: client.get(f"/v1/forecasts/{domain}/latest")),
                    range(gets),
                )
            )
        with ThreadPoolExecutor(4) as pool:
            bodies = [
                {"domain": domain, "issue_time": issue_times[i % len(issue_times)], "replace": True}
                for i in range(posts)
            ]
            made = list(
                pool.map(lambda b: timed(lambda: client.post("/v1/forecasts", json=b)), bodies)
            )
    print("\n2. loopback load test")
    for name, results, concurrency in (("GET latest", got, 8), ("POST forecast", made, 4)):
        seconds = [s for s, _ in results]
        errors = Counter(error[:300] for _, error in results if error is not None)
        print(
            f"{name:14s} {len(results):4d} requests at concurrency {concurrency}: "
            f"{percentiles(seconds)}  errors {errors.total()}"
        )
        for error, count in errors.most_common():
            print(f"    {count:4d} x {error}")


def malformed(url: str, domain: str, n: int) -> None:
    rng = random.Random(0)
    makers = [
        lambda: ("POST", "/v1/forecasts", {"content": b"{not json"}),
        lambda: ("POST", "/v1/forecasts", {"json": {"domain": rng.random()}}),
        lambda: ("POST", "/v1/forecasts", {"json": {"domain": domain, "issue_time": "soon"}}),
        lambda: ("POST", "/v1/forecasts", {"json": {"domain": domain, "x": 1}}),
        lambda: ("POST", "/v1/forecasts", {"json": [domain]}),
        lambda: ("POST", "/v1/forecasts", {"content": b"{" + b" " * 8000 + b"}"}),
        lambda: ("POST", "/v1/forecasts", {"json": {"domain": "../../etc"}}),
        lambda: ("GET", f"/v1/forecasts/{domain}/latest", {"params": {"format": "gif"}}),
        lambda: ("GET", f"/v1/forecasts/{domain}/latest", {"params": {"lead": -3}}),
        lambda: ("GET", "/v1/forecasts/no%00where/latest", {}),
    ]
    codes: dict[int, int] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(n):
            method, path, kw = rng.choice(makers)()
            if "content" in kw:
                kw["headers"] = {"Content-Type": "application/json"}
            code = client.request(method, path, **kw).status_code
            codes[code] = codes.get(code, 0) + 1
        alive = client.get("/healthz").status_code == 200
    bad = sum(v for k, v in codes.items() if not 400 <= k < 500)
    print(f"\n3. {n} malformed requests: status codes {dict(sorted(codes.items()))}")
    print(f"   not 4xx: {bad}; service alive after: {alive}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--gets", type=int, default=500)
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--malformed", type=int, default=1000)
    parser.add_argument(
        "--model-cpus", type=float, default=os.cpu_count(), help="serve.model_cpus (torch threads)"
    )
    parser.add_argument("--compile", action="store_true", help="serve.compile: true")
    parser.add_argument(
        "--precision", choices=("float32", "bfloat16"), default="float32", help="forecast.precision"
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import ray
    from ray import serve

    from pipelines.config import load_config
    from pipelines.serve.app import start

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        os.environ["PREFECT_HOME"] = str(root / "prefect")
        minutes = n_in_archive(load_config(None, []), args.cycles) * 5
        archive, frames = storm_archive(root / "archive", args.size, minutes)
        overrides = [
            f"stores.archive.location={root / 'archive'}",
            f"stores.forecasts.location={root / 'forecasts'}",
            f"forecast.registry={registry_with_default_model(root)}",
            "serve.port=8391",
            f"serve.model_cpus={args.model_cpus}",
            f"serve.compile={str(args.compile).lower()}",
            f"forecast.precision={args.precision}",
        ]
        cfg = load_config(None, overrides)
        ray.init(
            address="local",
            num_cpus=max(2, int(args.model_cpus)),
            include_dashboard=False,
            log_to_driver=False,
        )
        try:
            # the archive holds the domain before the service starts (as in operation): the
            # model warms up on its grid at load
            archive.write(frames[: n_in_archive(cfg, 0)], "history")
            start(cfg)
            print(
                f"domain {args.size} x {args.size}, Serve at {cfg.serve.client_url()}, "
                f"model replica {cfg.serve.model_cpus:g} CPUs, compile {cfg.serve.compile}, "
                f"{cfg.forecast.precision}"
            )
            cycle_latency(cfg, archive, frames, overrides, args.cycles)
            n_in, written = cfg.forecast.frames_in, n_in_archive(cfg, args.cycles)
            issue_times = [f.time.isoformat() for f in frames[n_in - 1 : written]]
            load_test(cfg.serve.client_url(), "bench", args.gets, args.posts, issue_times)
            malformed(cfg.serve.client_url(), "bench", args.malformed)
        finally:
            serve.shutdown()
            ray.shutdown()


if __name__ == "__main__":
    main()
