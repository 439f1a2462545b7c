"""Shared fixtures: the real radar samples (skipped with a reason when absent), the simulator's
volumes, and an environment that keeps Prefect and Ray inside the test's temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
RADAR_DATA = Path(
    os.environ.get("MOTIONCAST_RADAR_DATA", REPO.parent / "shared" / "data" / "radar")
)

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("ICECHUNK_LOG", "error")


def radar_sample(relative: str) -> Path:
    """A path below the real radar samples; skips the test when it is not there."""
    path = RADAR_DATA / relative
    if not path.exists():
        pytest.skip(f"real radar sample {path} absent (set MOTIONCAST_RADAR_DATA to its folder)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)


@pytest.fixture(scope="session")
def sim_volumes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """30 minutes of the 2-radar synthetic network (seed 0): 14 volumes."""
    from pipelines.config import MotioncastConfig
    from pipelines.simulate import simulate_network

    cfg = MotioncastConfig()
    out = tmp_path_factory.mktemp("sim")
    return simulate_network(out, pd.Timestamp("2026-06-01T12:00"), 30, 2, 0, cfg.simulate, cfg.zr)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance of 2 CPUs for the session's training tests."""
    import tempfile

    import ray

    ray.init(num_cpus=2, _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def truth_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 h of the synthetic storm (no radar) on a 64 x 64, 2 km grid: 73 frames, domain 'syn'."""
    from pipelines.grid import Grid
    from pipelines.simulate import truth_frames
    from pipelines.store import Archive

    path = tmp_path_factory.mktemp("truth") / "archive"
    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + 128e3, 3.0e6 + 128e3), 2000.0)
    frames = list(truth_frames("syn", grid, pd.Timestamp("2026-06-01"), 6 * 60, seed=0))
    Archive(path, create=True).write(frames, "synthetic truth")
    return path


# a small training configuration for 2 CPU workers on truth_archive: seconds per epoch
SMALL_TRAINING = [
    "training.data.frames_in=4",
    "training.data.frames_out=4",
    "training.data.crop=32",
    "training.data.block_hours=2",
    "training.data.seed=1",  # blocks 00-02, 02-04, 04-06: train, validation, train
    "training.data.split=[0.6,0.2,0.2]",
    "training.model.hidden=16",
    "training.batch_size=4",
    "training.steps_per_epoch=5",
    "training.validation_windows=8",
    "training.optimiser.lr=0.003",
]


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real S3 API server (moto) on 127.0.0.1 with a bucket 'motioncast', in its own process,
    its state recorded so that it survives a restart; AWS_* variables point this process and its
    children at it."""
    from tests.s3server import S3Server

    with S3Server(persist=tmp_path / "moto-requests.jsonl") as server:
        server.make_bucket("motioncast")
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def wait_for_commits(store, n: int, timeout_s: float = 120.0, while_alive=None) -> None:
    """Poll until the archive at ``store`` has ``n`` commits (its creation counts one), or the
    time is up, or the process ``while_alive`` has ended: the moment fault tests strike."""
    import time

    from pipelines.store import Archive, ArchiveError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (while_alive is None or while_alive.poll() is None):
        try:
            if len(Archive(store).history()) >= n:
                return
        except ArchiveError:  # not created yet
            pass
        time.sleep(0.02)


def motioncast(*args: str, cwd: Path = REPO, **kw):
    """``motioncast ARGS...`` as a process (``python -m pipelines.cli``), output captured."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def promoted_registry(root: Path, frames_in: int = 6) -> Path:
    """A registry at ``root/registry`` whose promoted v0001 is an untrained advective MotionRNN
    (the extrapolation nowcast; forced in)."""
    from motionrnn import MotionRNN, MotionRNNConfig, save_checkpoint
    from pipelines.config import MotioncastConfig
    from pipelines.registry import Registry

    model = MotionRNN(MotionRNNConfig(hidden=8, frames_in=frames_in, frames_out=12))
    save_checkpoint(root / "untrained.safetensors", model)
    registry = Registry(root / "registry")
    training = MotioncastConfig().training.model_dump(mode="json", exclude={"model"})
    card = {"run": "test", "training": training, "validation": {"model": {"csi_1mm": 0.1}}}
    registry.promote(registry.register(root / "untrained.safetensors", card).version, force=True)
    return root / "registry"


def start_service(overrides: list[str]):
    """The forecast service (Ray Serve, on a free loopback port) with these settings; its config.
    Call ``ray.serve.shutdown()`` after: it holds a CPU that training tests need."""
    from pipelines.config import load_config
    from pipelines.serve.app import start

    cfg = load_config(None, [f"serve.port={free_port()}", "serve.poll_seconds=0.5", *overrides])
    start(cfg)
    return cfg


@pytest.fixture
def issued(tmp_path: Path):
    """An archive of 3 h of the storm (a strip outside coverage) and extrapolation forecasts
    issued every 15 minutes from 00:25 to 02:25 (domain 'v'); the config that points at them,
    and the frames."""
    from pipelines.config import load_config
    from pipelines.forecast.issue import issue
    from pipelines.forecast.store import ForecastStore
    from pipelines.grid import Grid
    from pipelines.nowcast import get_method
    from pipelines.simulate import truth_frames
    from pipelines.store import Archive

    t0 = pd.Timestamp("2026-06-01t00:00")
    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + 96e3, 3.0e6 + 80e3), 2000.0)
    frames = list(truth_frames("v", grid, t0, 180, seed=4))
    for f in frames:
        f.precip[:, :6] = np.nan
    Archive(tmp_path / "archive", create=True).write(frames, "truth")
    cfg = load_config(
        None,
        [
            f"stores.archive.location={tmp_path / 'archive'}",
            f"stores.forecasts.location={tmp_path / 'forecasts'}",
            f"stores.scores.location={tmp_path / 'scores'}",
            "verify.fss_scales=[1,5]",
        ],
    )
    archive = Archive(tmp_path / "archive")
    forecasts = ForecastStore(tmp_path / "forecasts", create=True)
    extrapolation = get_method("extrapolation")
    for minutes in range(25, 150, 15):
        issue(archive, forecasts, extrapolation, "v", 6, 60, t0 + pd.Timedelta(minutes=minutes))
    return cfg, frames
