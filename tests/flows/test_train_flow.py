"""The train flow for real: Prefect's test harness, Ray Train with 2 CPU workers, a registry."""

import asyncio
from pathlib import Path

import pytest

from pipelines.registry import Registry
from tests.conftest import SMALL_TRAINING

pytestmark = pytest.mark.slow


def test_train_flow_registers_promotes_and_reports(ray_local, truth_archive: Path, tmp_path: Path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    from flows.train import train_flow

    overrides = [*SMALL_TRAINING, "training.max_steps=5", f"training.scaling.storage={tmp_path}"]
    with prefect_test_harness(server_startup_timeout=120):
        out = train_flow(str(truth_archive), str(tmp_path / "registry"), overrides=overrides)

        async def artifact() -> str:
            async with get_client() as client:
                found = await client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["training-summary"]))
                )
                return found[0].data

        summary = asyncio.run(artifact())
    assert out["version"] == "v0001" and out["steps"] == 5
    scores = out["validation"]  # of the registered (best) weights
    beats = scores["model"]["paired"]["lower"] > 0  # surely above S-PROG, what the cycle
    assert out["promoted"] == beats  # issues without it: served only then
    promoted = Registry(tmp_path / "registry").promoted()
    assert (promoted.version if promoted else None) == ("v0001" if beats else None)
    assert "| extrapolation |" in summary and "| sprog |" in summary
    assert ("promoted: yes" if beats else "not surely above it, refused") in summary
