"""The S3 test server itself: a real S3 API on 127.0.0.1 that Icechunk reads and writes."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import icechunk
import numpy as np
import pytest
import xarray as xr

from tests.s3server import S3Server


@pytest.fixture
def s3(tmp_path):
    with S3Server(persist=tmp_path / "moto-requests.jsonl") as server:
        server.make_bucket("archive")
        yield server


def _frames(n: int = 4) -> xr.Dataset:
    rr = np.arange(n * 64, dtype="float32").reshape(n, 8, 8)
    return xr.Dataset({"rr": (("t", "y", "x"), rr)}, coords={"t": np.arange(n)})


def test_icechunk_round_trip(s3: S3Server) -> None:
    storage = s3.storage("archive", "radar")
    assert not icechunk.Repository.exists(storage)
    repo = icechunk.Repository.create(storage)
    session = repo.writable_session("main")
    _frames().to_zarr(session.store, group="d", consolidated=False)
    snapshot = session.commit("4 frames")

    reopened = icechunk.Repository.open(s3.storage("archive", "radar"))
    assert icechunk.Repository.exists(s3.storage("archive", "radar"))
    back = xr.open_zarr(reopened.readonly_session("main").store, group="d", consolidated=False)
    xr.testing.assert_identical(back.load(), _frames())
    assert [s.id for s in reopened.ancestry(branch="main")][0] == snapshot
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="archive")["Contents"]]
    assert "radar/refs/branch.main/ref.json" in keys


def test_child_process_reaches_it_through_env(s3: S3Server) -> None:
    repo = icechunk.Repository.create(s3.storage("archive", "child"))
    session = repo.writable_session("main")
    _frames().to_zarr(session.store, group="d", consolidated=False)
    session.commit("4 frames")
    code = (
        "import icechunk, xarray as xr\n"
        "st = icechunk.s3_storage(bucket='archive', prefix='child', from_env=True)\n"
        "ro = icechunk.Repository.open(st).readonly_session('main')\n"
        "print(float(xr.open_zarr(ro.store, group='d', consolidated=False).rr.sum()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=s3.env() | {"PATH": "/usr/bin:/bin", "ICECHUNK_LOG": "error"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert float(out.stdout) == float(_frames().rr.sum())


def test_killed_server_restarts_with_its_objects(s3: S3Server) -> None:
    repo = icechunk.Repository.create(s3.storage("archive", "radar"))
    session = repo.writable_session("main")
    _frames().to_zarr(session.store, group="d", consolidated=False)
    first = session.commit("4 frames")

    port = s3.port
    s3.restart(kill=True)  # SIGKILL, then a fresh moto that replays the recorded requests
    assert s3.port == port
    session = icechunk.Repository.open(s3.storage("archive", "radar")).writable_session("main")
    (_frames() + 1).to_zarr(session.store, group="d", consolidated=False, mode="w")
    second = session.commit("4 frames again")

    s3.restart(kill=True)  # the second restart replays both commits, once each
    reopened = icechunk.Repository.open(s3.storage("archive", "radar"))
    assert [s.id for s in reopened.ancestry(branch="main")][:2] == [second, first]
    back = xr.open_zarr(reopened.readonly_session("main").store, group="d", consolidated=False)
    xr.testing.assert_identical(back.load(), _frames() + 1)


def test_concurrent_puts_all_survive_a_restart(s3: S3Server) -> None:
    """Regression: moto's recorder wrote concurrent requests into one another's lines, and the
    replay dropped them: a chunk that a committed snapshot references came back NoSuchKey."""
    client = s3.client()
    bodies = {f"k{i}": bytes([i]) * 45_000 for i in range(200)}
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda kv: client.put_object(Bucket="archive", Key=kv[0], Body=kv[1]),
                bodies.items(),
            )
        )
    s3.kill()
    with open(s3.persist, "a") as f:
        f.write('{"method": "PUT", "url": "cut short by a kil')  # killed mid-write
    s3.start()
    client = s3.client()
    for key, body in bodies.items():
        assert client.get_object(Bucket="archive", Key=key)["Body"].read() == body, key


def test_thread_mode() -> None:
    with S3Server(mode="thread") as server:
        server.make_bucket("archive")
        repo = icechunk.Repository.create(server.storage("archive", "t"))
        session = repo.writable_session("main")
        _frames(2).to_zarr(session.store, group="d", consolidated=False)
        session.commit("2 frames")
        assert icechunk.Repository.exists(server.storage("archive", "t"))
    assert not server.running
