"""Shared fixtures: the real radar samples (skipped with a reason when absent), the simulator's
volumes, and an environment that keeps Prefect and Ray inside the test's temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

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
