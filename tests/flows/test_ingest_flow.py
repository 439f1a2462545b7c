"""The ingest flow for real: Prefect's test harness, a local Dask cluster, a real store."""

import asyncio
import shutil
from pathlib import Path

import pytest

from pipelines.store import open_archive

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
            return found[0].data

    return asyncio.run(read())


def test_inbox_flow_on_dask_moves_landed_and_bad_files(
    prefect_harness, sim_volumes: list[Path], tmp_path: Path
):
    from flows.ingest import INGESTED, run_ingest_flow

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for path in sim_volumes[:6]:
        shutil.copy(path, inbox / path.name)
    (inbox / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    store = tmp_path / "archive"
    summary = run_ingest_flow(
        inbox=str(inbox), store=str(store), overrides=["ingest.batch_size=4", "ingest.workers=2"]
    )
    assert summary["files"] == 7
    assert summary["added"] == {"sim01": 3, "sim02": 3}
    assert len(summary["failed"]) == 1 and "broken.h5: unreadable HDF5" in summary["failed"][0]
    assert len(summary["snapshots"]) == 4  # two domains created, two batches of 4
    assert open_archive(store, "sim01").sizes["time"] == 3
    assert sorted(p.name for p in inbox.iterdir()) == [INGESTED]  # the inbox is empty again
    assert len(list((inbox / INGESTED).iterdir())) == 6
    assert (tmp_path / "archive.quarantine" / "broken.h5.reason.txt").exists()
    markdown = _artifact("ingest-summary")
    assert "frames added: sim01: 3, sim02: 3" in markdown and "broken.h5" in markdown
    # a second run finds nothing new and commits nothing
    again = run_ingest_flow(inbox=str(inbox), store=str(store))
    assert again["files"] == 0 and again["snapshots"] == []


def test_flow_over_paths_is_idempotent(prefect_harness, sim_volumes: list[Path], tmp_path: Path):
    from flows.ingest import ingest_flow

    store = str(tmp_path / "archive")
    paths = [str(p) for p in sim_volumes[:2]]
    first = ingest_flow(paths=paths, store=store)  # the flow's default (thread) task runner
    second = ingest_flow(paths=paths, store=store)
    assert sum(first["added"].values()) == 2
    assert second["unchanged"] == {"sim01": 1, "sim02": 1} and second["snapshots"] == []


def test_same_named_files_from_sub_folders_keep_their_paths_when_set_aside(tmp_path: Path):
    """Regression: moving landed files to .ingested/ by name lost all but the last of those
    with the same name."""
    from flows.ingest import INGESTED, set_aside

    inbox = tmp_path / "inbox"
    for day in ("d1", "d2"):
        (inbox / day).mkdir(parents=True)
        (inbox / day / "radar.h5").write_text(day)
    (inbox / "radar.h5").write_text("top")
    moved = [set_aside(p, inbox) for p in sorted(inbox.rglob("radar.h5"))]
    assert [p.relative_to(inbox / INGESTED).as_posix() for p in moved] == [
        "d1/radar.h5",
        "d2/radar.h5",
        "radar.h5",
    ]
    (inbox / "radar.h5").write_text("top, a day later")
    again = set_aside(inbox / "radar.h5", inbox)
    assert again.name == "radar~1.h5" and (inbox / INGESTED / "radar.h5").read_text() == "top"


def test_flow_on_a_dask_cluster_survives_a_killed_worker(
    prefect_harness, sim_volumes: list[Path], tmp_path: Path
):
    """The flow on an explicit dask.distributed cluster (ingest.dask_address); a worker is
    killed -9 mid-run: its tasks run again elsewhere and the archive equals a clean run's."""
    import os
    import signal
    import threading

    import xarray as xr
    from distributed import Client, LocalCluster

    from flows.ingest import run_ingest_flow
    from pipelines.config import load_config
    from pipelines.ingest import ingest
    from tests.conftest import wait_for_commits

    reference = tmp_path / "reference"
    assert ingest(sim_volumes, load_config(stores={"archive": {"location": reference}})).ok
    store = tmp_path / "archive"
    killed: list[int] = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = list(client.run(os.getpid).values())

        def kill_one_after_the_first_commit() -> None:
            wait_for_commits(store, 2)
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

        killer = threading.Thread(target=kill_one_after_the_first_commit, daemon=True)
        killer.start()
        summary = run_ingest_flow(
            paths=[str(p) for p in sim_volumes],
            store=str(store),
            overrides=[f"ingest.dask_address={cluster.scheduler_address}", "ingest.batch_size=2"],
        )
        killer.join(timeout=130)
    assert killed, "the worker was not killed"
    assert summary["failed"] == [] and sum(summary["added"].values()) == 14
    for domain in ("sim01", "sim02"):
        xr.testing.assert_identical(
            open_archive(store, domain).load(), open_archive(reference, domain).load()
        )
