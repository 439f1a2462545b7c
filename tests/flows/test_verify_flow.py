"""The verification flow for real: Prefect's test harness, real stores; its artifact."""

from __future__ import annotations

import asyncio

import pytest

from pipelines.verification.store import ScoresStore

pytestmark = pytest.mark.slow


def test_the_flow_scores_what_is_due_once_and_reports_it(issued):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.testing.utilities import prefect_test_harness

    from flows.verify import verify_flow

    cfg, _ = issued
    overrides = [
        f"store.archive={cfg.store.archive}",
        f"forecast.store={cfg.forecast.store}",
        f"verify.store={cfg.verify.store}",
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
    assert [(o["domain"], o["scored"], o["waiting"]) for o in first] == [("v", 7, 2)]
    assert [(o["scored"], o["snapshot"]) for o in second] == [(0, None)]
    assert "| v | 7 | 2 |" in report and "| v | issued | 7 |" in report
    assert "| v | persistence | 7 |" in report and "| v | extrapolation | 7 |" in report
    assert len(ScoresStore(cfg.verify.store).history()) == 2  # the creation and one commit
