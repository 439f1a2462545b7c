"""The archive on S3-compatible object storage, for real: a moto S3 server on 127.0.0.1 (the
``s3`` fixture), reached through the store.object_storage settings or the AWS_* variables."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

from pipelines.config import load_config
from pipelines.ingest import ingest
from pipelines.store import Archive, open_archive
from tests.conftest import REPO, motioncast, wait_for_commits

URL = "s3://motioncast/radar/archive"


def test_s3_url_is_kept_as_a_url_not_made_a_local_path(tmp_path: Path, monkeypatch):
    """Regression: the configuration's Path type turned s3:// URLs into 's3:/bucket/...' and a
    local folder was created."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [f"stores.archive.location={URL}"])
    assert cfg.stores.archive.location == URL
    assert load_config(None, ["stores.archive.location=~/a"]).stores.archive.location == str(
        Path.home() / "a"
    )


def test_ingest_and_open_on_s3_match_a_local_archive(s3, sim_volumes: list[Path], tmp_path):
    cfg = load_config(
        None,
        [
            f"stores.archive.location={URL}",
            f"stores.object_storage.endpoint_url={s3.endpoint}",
            "stores.object_storage.region=us-east-1",
        ],
    )
    result = ingest(sim_volumes[:6], cfg)
    assert result.ok and dict(result.added) == {"sim01": 3, "sim02": 3}
    local = ingest(
        sim_volumes[:6], load_config(stores={"archive": {"location": tmp_path / "local"}})
    )
    assert local.ok
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="motioncast")["Contents"]]
    assert any(k.startswith("radar/archive/refs/") for k in keys)
    assert not Path("s3:").exists() and not (REPO / "s3:").exists()
    for domain in ("sim01", "sim02"):  # from the environment alone, as an analyst would
        xr.testing.assert_identical(
            open_archive(URL, domain).load(), open_archive(tmp_path / "local", domain).load()
        )


def test_cli_ingest_info_and_a_missing_bucket(s3, sim_volumes: list[Path], tmp_path):
    run = motioncast("ingest", *map(str, sim_volumes[:2]), "--store", URL, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    info = motioncast("archive", "info", "--store", URL, "--json", cwd=tmp_path)
    assert info.returncode == 0 and '"n_frames": 1' in info.stdout
    assert not (tmp_path / "s3:").exists()
    missing = motioncast("archive", "info", "--store", "s3://no-such-bucket/a", cwd=tmp_path)
    assert missing.returncode == 2
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "s3://no-such-bucket/a" in lines[0], missing.stderr


@pytest.mark.slow
def test_kill_9_mid_ingest_on_s3_then_rerun(s3, tmp_path: Path):
    from pipelines.config import MotioncastConfig
    from pipelines.simulate import simulate_network

    cfg = MotioncastConfig()
    volumes = tmp_path / "volumes"
    simulate_network(volumes, pd.Timestamp("2026-06-01T12:00"), 60, 2, 3, cfg.simulate, cfg.zr)
    reference = tmp_path / "reference"
    assert ingest([volumes], load_config(stores={"archive": {"location": reference}})).ok
    args = [sys.executable, "-m", "pipelines.cli", "ingest", str(volumes), "--store", URL]
    args += ["--workers", "1", "--set", "ingest.batch_size=4"]
    proc = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        wait_for_commits(URL, 5)  # two domains created, two batches, then into the next
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = {d: open_archive(URL, d).load() for d in Archive(URL).domains()}
    n = sum(int(ds.present.sum()) for ds in killed.values())
    assert 0 < n < 26 and n % 4 == 0  # whole batches only
    for domain, ds in killed.items():
        ref = open_archive(reference, domain).load()
        xr.testing.assert_identical(ds, ref.sel(time=ds.time))
    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    for domain in ("sim01", "sim02"):
        xr.testing.assert_identical(
            open_archive(URL, domain).load(), open_archive(reference, domain).load()
        )


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np, pandas as pd
    from pipelines.frame import Frame
    from pipelines.grid import Grid
    from pipelines.store import Archive

    url, who, parity, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    grid = Grid.from_extent("EPSG:3035", (4.0e6, 3.0e6, 4.03e6, 3.02e6), 1000.0)
    archive = Archive(url, create=True)
    while not go.exists():
        time.sleep(0.01)
    for i in range(parity, 20, 2):  # one commit per frame: as many races as possible
        precip = np.full(grid.shape, float(i), dtype=np.float32)
        t = pd.Timestamp("2026-06-01T12:00") + pd.Timedelta(minutes=5 * i)
        frame = Frame("d", t, grid, precip, f"{who}{i}.h5", f"sha{i}", "test")
        archive.write([frame], f"{who} frame {i}")
    """
)


@pytest.mark.slow
def test_two_writer_processes_on_one_repository_lose_nothing(s3, tmp_path: Path):
    """Object storage has no local lock: Icechunk's conflict detection decides, and the loser
    rebases or writes again on top of the winner's commit."""
    Archive(URL, create=True)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, URL, who, str(parity), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who, parity in (("a", 0), ("b", 1))
    ]
    time.sleep(3)  # both imported and opened the repository
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ds = open_archive(URL, "d")
    assert ds.present.values.all() and ds.sizes["time"] == 20
    assert ds.precip.isel(y=1, x=1).values.tolist() == list(map(float, range(20)))
    messages = [m for _, m, _ in Archive(URL).history()]
    assert sorted(m for m in messages if " frame " in m) == sorted(
        f"{'ab'[i % 2]} frame {i}" for i in range(20)
    )
    races = sum(err.count("lost a race") for _, err in outputs)
    print(f"{races} commits lost a race and were written again")


@pytest.mark.slow
def test_s3_server_killed_and_restarted_mid_ingest(s3, sim_volumes: list[Path], tmp_path):
    """The server is killed -9 while an ingest commits batch after batch, and back 2 s later:
    the ingest rides it out on the SDK's retries or fails cleanly, nothing committed is lost,
    and a rerun completes the archive, equal to a clean one."""
    reference = tmp_path / "reference"
    assert ingest(sim_volumes, load_config(stores={"archive": {"location": reference}})).ok
    args = [sys.executable, "-m", "pipelines.cli", "ingest", *map(str, sim_volumes)]
    args += ["--store", URL, "--workers", "1", "--set", "ingest.batch_size=2"]
    proc = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    wait_for_commits(URL, 5, while_alive=proc)  # two domains created, two batches
    committed = Archive(URL).history()
    s3.kill()
    time.sleep(2)
    s3.start()  # the recorded requests are replayed: the state as it was
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 1), err  # 1: a batch failed cleanly, reported
    assert "Traceback" not in err and "panic" not in err
    history = [sid for sid, _, _ in Archive(URL).history()]
    assert [sid for sid, _, _ in committed] == history[len(history) - len(committed) :]
    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    for domain in ("sim01", "sim02"):
        xr.testing.assert_identical(
            open_archive(URL, domain).load(), open_archive(reference, domain).load()
        )
