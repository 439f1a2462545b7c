"""The verification flow and the store maintenance for real: Prefect's test harness, real
stores; the verification artifact."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.store import open_forecasts
from pipelines.simulate import truth_frames
from pipelines.store import Archive
from pipelines.verification.store import ScoresStore

pytestmark = pytest.mark.slow


def _later_frames(frames, minutes: int) -> list:
    """The fixture's storm ``minutes`` on from its last frame, the same strip unknown."""
    t0, grid = frames[0].time, frames[0].grid
    span = int((frames[-1].time - t0) / pd.Timedelta(minutes=1)) + minutes
    later = [f for f in truth_frames("v", grid, t0, span, seed=4) if f.time > frames[-1].time]
    for f in later:
        f.precip[:, :6] = np.nan
    return later


def test_the_flow_scores_what_is_due_once_and_reports_it_and_maintenance_keeps_every_score(
    issued, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.testing.utilities import prefect_test_harness

    from flows.forecast import maintenance_flow
    from flows.verify import verify_flow

    cfg, frames = issued
    overrides = [
        f"stores.archive.location={cfg.stores.archive.location}",
        f"stores.forecasts.location={cfg.stores.forecasts.location}",
        f"stores.scores.location={cfg.stores.scores.location}",
    ]
    with prefect_test_harness(server_startup_timeout=120):
        first = verify_flow(overrides=overrides)
        second = verify_flow(overrides=overrides)

        async def artifact() -> str:
            async with get_client() as client:
                found = await client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["verification"])),
                    sort=ArtifactSort.CREATED_DESC,
                )
                return found[-1].data  # the first run's

        report = asyncio.run(artifact())
        Archive(cfg.stores.archive.location).write(_later_frames(frames, 30), "the last half hour")
        third = verify_flow(overrides=overrides)
        scores = ScoresStore(cfg.stores.scores.location)
        before = scores.pool("v").scores["issued"].summary()
        history = len(scores.history())  # the creation and two commits
        forecasts = open_forecasts(cfg.stores.forecasts.location).load()
        no_scores = [*overrides[:2], f"stores.scores.location={tmp_path / 'none'}"]
        only_forecasts = maintenance_flow(overrides=no_scores)  # no scores store: skipped
        young = [*overrides, "stores.forecasts.audit_days=1e-9", "stores.scores.audit_days=1e-9"]
        maintained = maintenance_flow(overrides=young)
    assert [(o["domain"], o["scored"], o["waiting"]) for o in first] == [("v", 7, 2)]
    assert [(o["scored"], o["snapshot"]) for o in second] == [(0, None)]
    assert "| v | 7 | 2 |" in report and "| v | issued | 7 |" in report
    assert "| v | persistence | 7 |" in report and "| v | extrapolation | 7 |" in report
    assert [o["scored"] for o in third] == [2]
    assert set(only_forecasts) == {"forecasts"} and not (tmp_path / "none").exists()
    assert only_forecasts["forecasts"]["expired_snapshots"] == 0  # all younger than 7 days
    assert history == 3 and maintained["scores"]["expired_snapshots"] >= 1
    assert maintained["forecasts"]["expired_snapshots"] >= 8  # 9 forecasts, the creation
    assert len(ScoresStore(cfg.stores.scores.location).history()) == 2  # the tip and the root
    after = ScoresStore(cfg.stores.scores.location).pool("v")
    assert after.issues == 9 and after.scores["issued"].summary() == before
    xr_forecasts = open_forecasts(cfg.stores.forecasts.location).load()
    assert xr_forecasts.identical(forecasts)
