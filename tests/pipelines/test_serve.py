"""The forecast service for real: Ray Serve on loopback, a real archive, registry and store;
and the parts of the service that need no Ray (the model's promotion rule, the request guard,
the forecast logic behind the routes) on their own."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.store import ForecastStore, open_forecasts
from tests.conftest import promoted_registry, start_service

pytestmark = pytest.mark.slow
TOKEN = "test-token-5d1f"
GARBAGE = b"not a safetensors checkpoint" * 4


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The token as a mounted secret would hold it (the Serve replicas read it themselves: an
    environment variable set here would not reach them, Ray's workers being started already)."""
    path = tmp_path_factory.mktemp("secret") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def service(ray_local, truth_archive: Path, token_file: Path, tmp_path_factory):
    from ray import serve

    root = tmp_path_factory.mktemp("service")
    cfg = start_service(
        [
            f"stores.archive.location={truth_archive}",
            f"stores.forecasts.location={root / 'forecasts'}",
            f"forecast.registry={promoted_registry(root)}",
            f"serve.token_file={token_file}",
            "serve.docs=true",
        ]
    )
    client = httpx.Client(
        base_url=cfg.serve.client_url(), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    )
    yield cfg, client, root
    client.close()
    serve.shutdown()


def wait_for(check, what: str, seconds: float = 30.0):
    """Poll ``check()`` until it is truthy (its value), failing with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.25)
    return value


def test_a_forecast_is_made_stored_and_read_back(service):
    cfg, client, root = service
    made = client.post("/v1/forecasts", json={"domain": "syn"})
    assert made.status_code == 201, made.text
    summary = made.json()
    assert summary["method"] == "motionrnn" and summary["model_version"] == "v0001"
    assert summary["issue_time"] == "2026-06-01T06:00:00" and summary["status"] == "written"
    again = client.post("/v1/forecasts", json={"domain": "syn"})
    assert again.status_code == 200 and again.json()["status"] == "exists"
    assert set(summary["seconds"]) == {"read", "forecast", "write"}
    assert {
        k: v for k, v in again.json().items() if k not in ("status", "snapshot", "seconds")
    } == {
        k: v for k, v in summary.items() if k not in ("status", "snapshot", "seconds")
    }  # read back from the store: the same as made
    latest = client.get("/v1/forecasts/syn/latest")
    assert latest.status_code == 200 and latest.json()["issue_time"] == "2026-06-01T06:00:00"
    png = client.get("/v1/forecasts/syn/latest", params={"format": "png", "lead": 3})
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    # a replacement is a new commit: the latest answers follow it, not an old cached one
    body = {"domain": "syn", "method": "persistence", "replace": True}
    assert client.post("/v1/forecasts", json=body).json()["status"] == "replaced"
    assert client.get("/v1/forecasts/syn/latest").json()["method"] == "persistence"
    png2 = client.get("/v1/forecasts/syn/latest", params={"format": "png", "lead": 3})
    assert png2.content != png.content
    body = {"domain": "syn", "method": "motionrnn", "replace": True}
    assert client.post("/v1/forecasts", json=body).json()["model_version"] == "v0001"
    ds = open_forecasts(cfg.stores.forecasts.location, "syn")
    assert ds.sizes["issue_time"] == 1 and ds.model_version.values.tolist() == ["v0001"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"domain": "nowhere"}, 404, "no domain 'nowhere'"),
        ({"domain": "syn", "issue_time": "yesterday"}, 422, "valid datetime"),
        ({"domain": "syn", "issue_time": "2026-06-01T00:05"}, 422, "no complete input window"),
        ({"domain": "syn", "method": "magic"}, 422, "Input should be"),
        ({"domain": "syn", "colour": "red"}, 422, "Extra inputs"),
        ({"domain": "../etc"}, 422, "should match pattern"),
        ([1, 2], 422, "valid dictionary"),
        ({"domain": "syn", "deadline_seconds": 0}, 422, "greater than 0"),
    ],
)
def test_invalid_requests_get_a_4xx_that_says_why(service, body, status, detail):
    _, client, _ = service
    response = client.post("/v1/forecasts", json=body)
    assert response.status_code == status
    assert detail in str(response.json()["detail"])


def test_oversized_malformed_and_unauthorised_requests_are_refused(service):
    cfg, client, _ = service
    big = client.post("/v1/forecasts", content=b"{" + b" " * 10_000 + b"}")
    assert big.status_code == 413
    broken = client.post(
        "/v1/forecasts", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    anonymous = httpx.Client(base_url=cfg.serve.client_url(), timeout=60)
    assert anonymous.post("/v1/forecasts", json={"domain": "syn"}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert anonymous.get("/v1/forecasts/syn/latest", headers=wrong).status_code == 401
    health = anonymous.get("/healthz")  # open, and the service is still up
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model_version": "v0001", "model_error": None}
    assert anonymous.get("/v1/forecasts/nowhere/latest", headers=client.headers).status_code == 404


def chunked(total: int, prefix: bytes = b'{"domain": "', suffix: bytes = b'"}'):
    """A JSON body of ``total`` bytes as a generator: httpx sends it chunked, no length."""
    yield prefix
    left, piece = total - len(prefix) - len(suffix), b"a" * 65536
    while left > 0:
        yield piece[:left]
        left -= len(piece)
    yield suffix


def test_a_chunked_body_is_cut_off_at_the_limit_after_the_token(service):
    """A body without Content-Length (chunked) is counted as it is read: 413 once it passes
    4 KB, never read whole, parsed or echoed; without the token, 401 before any of it."""
    cfg, client, _ = service
    start = time.monotonic()
    big = client.post("/v1/forecasts", content=chunked(50_000_000))
    assert big.status_code == 413, big.text[:200]
    assert big.json() == {"detail": "body over 4096 bytes"} and len(big.content) < 100
    assert time.monotonic() - start < 60
    anonymous = httpx.Client(base_url=cfg.serve.client_url(), timeout=60)
    refused = anonymous.post("/v1/forecasts", content=chunked(1_000_000))
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200


def test_a_422_does_not_echo_the_request(service):
    _, client, _ = service
    for body in (
        {"domain": "x" * 3000},
        {"domain": "syn", "issue_time": "y" * 3000},
        {"domain": "syn", "method": "z" * 3000},
    ):
        response = client.post("/v1/forecasts", json=body)
        assert response.status_code == 422
        assert "x" * 100 not in response.text and "y" * 100 not in response.text
        assert "z" * 100 not in response.text and len(response.content) < 1000
        (error,) = response.json()["detail"]
        assert set(error) == {"loc", "msg", "type"}


def test_the_docs_routes_take_the_token(service):
    cfg, client, _ = service
    anonymous = httpx.Client(base_url=cfg.serve.client_url(), timeout=60)
    for path in ("/openapi.json", "/docs"):
        assert anonymous.get(path).status_code == 401
        assert client.get(path).status_code == 200
    assert "HTTPBearer" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_the_openapi_schema_fuzzed_gets_no_server_error(service):
    """schemathesis generates requests from the OpenAPI schema (bounded: 40 per operation,
    loopback only); none may get a 5xx, and the service stays up."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    cfg, client, _ = service
    schema = schemathesis.openapi.from_url(
        f"{cfg.serve.client_url()}/openapi.json", headers=dict(client.headers)
    )
    failures, calls = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "POST":
            continue  # a valid body makes a forecast: the POST route is covered above

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(headers=dict(client.headers), timeout=60)
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append((case.path, case.query, response.status_code))

        check()
    assert failures == [] and len(calls) >= 40  # /healthz and /v1/forecasts/{domain}/latest
    assert any(400 <= code < 500 for code in calls)
    assert client.get("/healthz").status_code == 200


def test_a_forecast_given_up_at_its_deadline_is_a_504_and_not_stored(service):
    cfg, client, _ = service
    body = {"domain": "syn", "issue_time": "2026-06-01T02:00", "deadline_seconds": 0.001}
    late = client.post("/v1/forecasts", json=body)
    assert late.status_code == 504, late.text
    detail = late.json()["detail"]
    assert "deadline passed" in detail and "\n" not in detail
    stored = ForecastStore(cfg.stores.forecasts.location).issue_times("syn")
    assert pd.Timestamp("2026-06-01T02:00") not in stored
    body["deadline_seconds"] = 60
    assert client.post("/v1/forecasts", json=body).status_code == 201


def test_concurrent_requests_for_one_issue_time_store_it_once_and_say_so(service):
    """Four requests for one issue time at once: each finds it not stored, the model makes it
    four times in one batch, one write commits; the others answer 200 with what the store
    holds (the write lost), not 201."""
    _, client, _ = service
    body = {"domain": "syn", "issue_time": "2026-06-01T02:30", "method": "motionrnn"}
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(client.post("/v1/forecasts", json=body)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [
        (a.status_code, a.json().get("status")) for a in answers
    ]
    assert sorted(a.json()["status"] for a in answers) == ["exists"] * 3 + ["written"]
    kept = {
        k: v for k, v in answers[0].json().items() if k not in ("status", "snapshot", "seconds")
    }
    for answer in answers[1:]:
        assert {
            k: v for k, v in answer.json().items() if k not in ("status", "snapshot", "seconds")
        } == kept


def test_a_promotion_during_a_stream_of_requests_fails_none(service):
    """v0002 is promoted while forecasts stream in: none fails, later ones name v0002."""
    from pipelines.registry import Registry

    cfg, client, root = service
    registry = Registry(root / "registry")
    v2 = registry.register(root / "untrained.safetensors", registry.get("v0001").card)
    times = [f"2026-06-01T0{h}:{m:02d}" for h in (3, 4) for m in range(0, 60, 10)]
    results: dict[str, httpx.Response] = {}

    def post(t: str) -> None:
        results[t] = client.post("/v1/forecasts", json={"domain": "syn", "issue_time": t})

    threads = [threading.Thread(target=post, args=(t,)) for t in times[:6]]
    for thread in threads:
        thread.start()
    registry.promote(v2.version, force=True)
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 20  # the replica looks every serve.poll_seconds (0.5 s)
    while client.get("/healthz").json()["model_version"] != "v0002":
        assert time.monotonic() < deadline, "v0002 never went into service"
        time.sleep(0.25)
    for t in times[6:]:
        post(t)
    assert [r.status_code for r in results.values()] == [201] * len(times)
    versions = [results[t].json()["model_version"] for t in times]
    assert set(versions[:6]) <= {"v0001", "v0002"} and set(versions[6:]) == {"v0002"}
    ds = open_forecasts(cfg.stores.forecasts.location, "syn")
    assert np.isfinite(ds.precip.sel(issue_time="2026-06-01T04:50").values).any()


def test_a_missing_version_folder_does_not_take_the_model_out_of_service(service):
    """The folder of the version in service goes missing while promoted.json is rewritten (a
    registry being restored): the model stays. A version promoted while its folder is missing
    fails to load, the one in service stays, and it goes in once its folder is there."""
    from pipelines.registry import Registry

    cfg, client, root = service
    registry = Registry(root / "registry")
    promoted = root / "registry" / "promoted.json"
    serving = client.get("/healthz").json()["model_version"]
    assert serving is not None
    aside = root / "aside"
    aside.mkdir()
    (registry.versions_dir / serving).rename(aside / serving)
    promoted.write_text(promoted.read_text())  # a new file time, the same promotion
    time.sleep(2.0)  # 4 polls
    assert client.get("/healthz").json() == {
        "status": "ok",
        "model_version": serving,
        "model_error": None,
    }
    made = client.post("/v1/forecasts", json={"domain": "syn", "issue_time": "2026-06-01T05:30"})
    assert made.status_code == 201 and made.json()["model_version"] == serving
    (aside / serving).rename(registry.versions_dir / serving)

    new = registry.register(root / "untrained.safetensors", registry.get(serving).card).version
    (registry.versions_dir / new).rename(aside / new)
    record = json.loads(promoted.read_text())
    promoted.write_text(json.dumps({**record, "version": new}))  # its folder not there (yet)
    health = wait_for(
        lambda: (h := client.get("/healthz").json())["model_error"] and h,
        f"{new} never reported as failing to load",
    )
    assert health["model_version"] == serving
    assert health["model_error"].startswith(f"{new} failed to load (NoModelError: ")
    made = client.post("/v1/forecasts", json={"domain": "syn", "issue_time": "2026-06-01T05:40"})
    assert made.status_code == 201 and made.json()["model_version"] == serving
    (aside / new).rename(registry.versions_dir / new)
    wait_for(  # tried again after 0.5, 1, 2, ... s
        lambda: (
            client.get("/healthz").json()
            == {"status": "ok", "model_version": new, "model_error": None}
        ),
        f"{new} never went into service once its folder was back",
    )


def test_a_promoted_model_that_fails_to_load_leaves_the_service_up(service, token_file, tmp_path):
    """A second app (route /broken, docs off by default) whose promoted v0001 is a corrupt
    checkpoint: it starts, model forecasts are a 503 with the reason; a loadable v0002 goes in;
    a corrupt v0003 leaves v0002 in service and is tried again until it loads."""
    from ray import serve

    from pipelines.config import load_config
    from pipelines.registry import Registry
    from pipelines.serve.app import build

    cfg, client, root = service
    good = root / "untrained.safetensors"
    card = Registry(root / "registry").get("v0001").card
    registry = Registry(tmp_path / "registry")
    v1 = registry.register(good, card)
    v1.checkpoint.write_bytes(GARBAGE)
    registry.promote(v1.version, force=True)
    other = load_config(
        None,
        [
            f"stores.archive.location={cfg.stores.archive.location}",
            f"forecast.registry={tmp_path / 'registry'}",
            f"stores.forecasts.location={tmp_path / 'f'}",
            f"serve.token_file={token_file}",
            "serve.poll_seconds=0.5",
            "serve.retry_max_seconds=2",
            "serve.model_cpus=0.5",
        ],
    )
    serve.run(build(other), name="broken", route_prefix="/broken")
    try:

        def health() -> dict:
            return client.get("/broken/healthz").json()

        first = health()
        assert first["status"] == "ok" and first["model_version"] is None
        assert first["model_error"].startswith("v0001 failed to load (SafetensorError: ")
        refused = client.post("/broken/v1/forecasts", json={"domain": "syn"})
        assert refused.status_code == 503
        assert refused.json()["detail"] == f"no model in service: {first['model_error']}"
        assert client.get("/broken/openapi.json").status_code == 404  # docs off
        assert client.get("/broken/docs").status_code == 404
        assert httpx.get(f"{cfg.serve.client_url()}/broken/docs").status_code == 401

        v2 = registry.register(good, card)
        registry.promote(v2.version, force=True)
        wait_for(
            lambda: health() == {"status": "ok", "model_version": "v0002", "model_error": None},
            "v0002 never went into service",
        )
        v3 = registry.register(good, card)
        v3.checkpoint.write_bytes(GARBAGE)
        registry.promote(v3.version, force=True)
        failing = wait_for(lambda: (h := health())["model_error"] and h, "v0003 never failed")
        assert failing["model_version"] == "v0002"
        assert failing["model_error"].startswith("v0003 failed to load (SafetensorError: ")
        body = {"domain": "syn", "issue_time": "2026-06-01T05:00"}
        made = client.post("/broken/v1/forecasts", json=body)
        assert made.status_code == 201 and made.json()["model_version"] == "v0002"
        shutil.copyfile(good, v3.checkpoint)  # repaired: the next try loads it
        wait_for(
            lambda: health() == {"status": "ok", "model_version": "v0003", "model_error": None},
            "v0003 never went into service once repaired",
        )
    finally:
        serve.delete("broken")


def test_with_no_promoted_model_a_model_forecast_is_a_503_that_says_so(service, tmp_path):
    """A second app (route /nomodel) over a registry with nothing promoted: 503 in one line."""
    from ray import serve

    from pipelines.config import load_config
    from pipelines.registry import Registry
    from pipelines.serve.app import build

    cfg, client, root = service
    Registry(tmp_path / "registry").versions_dir.mkdir(parents=True)
    settings = [
        f"forecast.registry={tmp_path / 'registry'}",
        f"stores.forecasts.location={tmp_path / 'f'}",
    ]
    other = load_config(None, [f"stores.archive.location={cfg.stores.archive.location}", *settings])
    serve.run(build(other), name="nomodel", route_prefix="/nomodel")
    try:
        health = client.get("/nomodel/healthz").json()
        assert health == {"status": "ok", "model_version": None, "model_error": None}
        refused = client.post("/nomodel/v1/forecasts", json={"domain": "syn"})
        assert refused.status_code == 503
        assert refused.json()["detail"] == f"{tmp_path / 'registry'}: no model is promoted"
        fallback = client.post("/nomodel/v1/forecasts", json={"domain": "syn", "method": "sprog"})
        assert fallback.status_code == 201 and fallback.json()["method"] == "sprog"
    finally:
        serve.delete("nomodel")


# ---- without Ray -------------------------------------------------------------------------
class FakeLoad:
    """A loader of whatever promoted.json names: a model (``.version``), or the error set for
    that version."""

    def __init__(self, registry: Path):
        self.registry = registry
        self.errors: dict[str, Exception] = {}
        self.calls: list[str] = []

    def __call__(self):
        version = json.loads((self.registry / "promoted.json").read_text())["version"]
        self.calls.append(version)
        if version in self.errors:
            raise self.errors[version]
        return SimpleNamespace(version=version)


def promote(registry: Path, version: str | None) -> None:
    (registry / "promoted.json").write_text(json.dumps({"version": version, "history": []}))


def test_a_model_that_fails_to_load_is_tried_again_with_backoff_one_line_each(tmp_path, caplog):
    from pipelines.nowcast import NoModelError
    from pipelines.serve.replica import PromotedModel

    now = [0.0]
    load = FakeLoad(tmp_path)
    model = PromotedModel(tmp_path, load, first_retry=5, max_retry=30, clock=lambda: now[0])
    assert model.refresh() is None and load.calls == []  # nothing promoted: nothing to load
    assert model.unavailable() == f"{tmp_path}: no model is promoted"

    class SafetensorError(Exception):
        pass

    load.errors["v0001"] = SafetensorError("Error while deserializing header: HeaderTooLarge\nmore")
    promote(tmp_path, "v0001")
    caplog.set_level(logging.WARNING, "pipelines.serve.replica")
    tries = []
    for _ in range(60):  # 60 polls of one second: tries at 0, 5, 15, 35 (after 5, 10, 20 s)
        model.refresh()
        tries.append(len(load.calls))
        now[0] += 1.0
    assert [i for i in range(1, 60) if tries[i] > tries[i - 1]] == [5, 15, 35]
    reason = "SafetensorError: Error while deserializing header: HeaderTooLarge"
    assert [r.getMessage() for r in caplog.records] == [
        f"model v0001 failed to load ({reason}); keeping none, next try in {s} s"
        for s in (5, 10, 20, 30)
    ]
    assert all(r.exc_info is None for r in caplog.records)  # a line, not a traceback
    assert model.status() == {
        "model_version": None,
        "model_error": f"v0001 failed to load ({reason})",
    }
    assert model.unavailable() == f"no model in service: v0001 failed to load ({reason})"

    del load.errors["v0001"]  # repaired: the next try (at 65 s) loads it
    now[0] = 65.0
    assert model.refresh() == "v0001" and model.status()["model_error"] is None

    load.errors["v0002"] = NoModelError("reg: no version 'v0002' (registered: v0001)")
    promote(tmp_path, "v0002")  # a newer one that fails: v0001 stays, the backoff starts over
    caplog.clear()
    assert model.refresh() == "v0001" and model.forecaster.version == "v0001"
    assert [r.getMessage() for r in caplog.records] == [
        "model v0002 failed to load (NoModelError: reg: no version 'v0002' (registered: v0001));"
        " keeping v0001, next try in 5 s"
    ]
    promote(tmp_path, "v0001")  # promoted back: in service already, the failure is over
    assert model.refresh() == "v0001" and model.status()["model_error"] is None


def test_what_is_in_service_follows_what_is_promoted_not_file_times(tmp_path, caplog):
    from pipelines.serve.replica import PromotedModel

    load = FakeLoad(tmp_path)
    model = PromotedModel(tmp_path, load, first_retry=5, max_retry=30)
    promote(tmp_path, "v0001")
    assert model.refresh() == "v0001" and load.calls == ["v0001"]
    promote(tmp_path, "v0001")  # rewritten, the same version (its folder may be missing)
    os.utime(tmp_path / "promoted.json", (1, 1))
    assert model.refresh() == "v0001" and load.calls == ["v0001"]  # not loaded again
    (tmp_path / "promoted.json").unlink()  # a registry being restored: keep serving
    assert model.refresh() == "v0001"
    caplog.set_level(logging.WARNING, "pipelines.serve.replica")
    caplog.clear()  # what came before (INFO, when another test set the root level)
    (tmp_path / "promoted.json").write_text('{"version": "v00')  # half-written
    for _ in range(3):
        assert model.refresh() == "v0001"
    assert len(caplog.records) == 1 and "unreadable" in caplog.records[0].getMessage()
    assert "unreadable" in model.status()["model_error"]
    promote(tmp_path, "v0001")
    assert model.refresh() == "v0001" and model.status()["model_error"] is None
    promote(tmp_path, None)  # the promotion withdrawn: the model leaves service
    assert model.refresh() is None and model.forecaster is None
    assert model.status() == {"model_version": None, "model_error": None}
    assert load.calls == ["v0001"]


def run_guard(guard_app, scope: dict, chunks: list[bytes]):
    """Drive an ASGI app with a request whose body comes in ``chunks``; (messages sent, chunks
    pulled)."""
    pulled, sent = [], []

    async def receive():
        if len(pulled) == len(chunks):
            await asyncio.sleep(3600)  # nothing more comes
        pulled.append(chunks[len(pulled)])
        return {"type": "http.request", "body": pulled[-1], "more_body": len(pulled) < len(chunks)}

    async def send(message):
        sent.append(message)

    asyncio.run(guard_app(scope, receive, send))
    return sent, len(pulled)


def test_the_guard_reads_no_more_of_a_body_than_the_limit(tmp_path):
    from pipelines.serve.guard import MAX_BODY_BYTES, RequestGuard

    seen = []

    async def app(scope, receive, send):
        seen.append(await receive())

    guard = RequestGuard(app, token=TOKEN)
    auth = [(b"authorization", f"Bearer {TOKEN}".encode())]
    scope = {"type": "http", "method": "POST", "path": "/v1/forecasts", "headers": auth}
    sent, pulled = run_guard(guard, scope, [b"x" * 1000] * 100)  # 100 kB, no Content-Length
    assert sent[0]["status"] == 413 and pulled == MAX_BODY_BYTES // 1000 + 1 and seen == []
    sent, pulled = run_guard(guard, {**scope, "headers": []}, [b"x" * 1000] * 100)
    assert sent[0]["status"] == 401 and pulled == 0 and seen == []  # the token first
    assert (b"www-authenticate", b"Bearer") in sent[0]["headers"]
    sent, pulled = run_guard(guard, scope, [b'{"domain": ', b'"syn"}'])  # within: handed on
    assert seen == [{"type": "http.request", "body": b'{"domain": "syn"}', "more_body": False}]
    health = {**scope, "method": "GET", "path": "/healthz", "headers": []}
    seen.clear()
    sent, pulled = run_guard(guard, health, [b""])  # /healthz takes no token
    assert seen and pulled == 1
    length = [*auth, (b"content-length", b"99999")]
    sent, pulled = run_guard(guard, {**scope, "headers": length}, [b"x"])
    assert sent[0]["status"] == 413 and pulled == 0


@pytest.fixture
def local_service(truth_archive: Path, tmp_path: Path):
    """The logic behind the routes (``ForecastService``) and its FastAPI app, without Ray."""
    from pipelines.config import load_config
    from pipelines.serve.app import ForecastService, make_api

    cfg = load_config(
        None,
        [
            f"stores.archive.location={truth_archive}",
            f"stores.forecasts.location={tmp_path / 'forecasts'}",
        ],
    )
    service = ForecastService(cfg, model=None)
    return service, make_api(service, TOKEN)


def post(app, body: dict) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/v1/forecasts", json=body, headers=headers, timeout=120)

    return asyncio.run(go())


def test_a_forecast_whose_write_lost_is_a_200_with_what_the_store_holds(local_service):
    """Another writer stores the issue time between this request's check and its write: the
    answer is 200 and the stored forecast's summary, not 201 and the one made here."""
    from pipelines.forecast.issue import issue
    from pipelines.nowcast import get_method
    from pipelines.store import Archive

    service, app = local_service
    cfg = service.cfg
    made_here = service.forecaster

    def racing(method: str, deadline: float | None):
        inner = made_here(method, deadline)

        def forecaster(frames: np.ndarray, n_out: int):
            other = get_method("extrapolation")
            f = cfg.forecast
            archive = Archive(cfg.stores.archive.location)
            issue(archive, service.store(), other, "syn", f.frames_in, f.lead_minutes, when)
            return inner(frames, n_out)

        forecaster.name = inner.name
        return forecaster

    when = pd.Timestamp("2026-06-01T01:00")
    service.forecaster = racing
    answer = post(app, {"domain": "syn", "issue_time": str(when), "method": "persistence"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "exists" and answer.json()["method"] == "extrapolation"
    assert open_forecasts(cfg.stores.forecasts.location, "syn").method.values.tolist() == [
        "extrapolation"
    ]


def test_the_model_waited_for_until_the_deadline_then_cancelled(local_service):
    """A model answer that does not come by ``deadline_seconds``: the call is cancelled, 504,
    nothing stored."""
    from pipelines.serve.app import ModelTimeout, ServedModel

    class Response:
        cancelled = False

        def result(self, timeout_s=None):
            waited.append(timeout_s)
            raise TimeoutError("Timed out resolving to ObjectRef.")

        def cancel(self):
            Response.cancelled = True

    waited: list = []
    handle = SimpleNamespace(forecast=SimpleNamespace(remote=lambda args: Response()))
    with pytest.raises(ModelTimeout, match="deadline passed"):
        ServedModel(handle, deadline=time.monotonic() + 5)(np.zeros((6, 4, 4)), 2)
    assert Response.cancelled and 0 < waited[0] <= 5

    service, app = local_service
    service.model = handle
    body = {"domain": "syn", "issue_time": "2026-06-01T01:30", "method": "motionrnn"}
    answer = post(app, {**body, "deadline_seconds": 30})
    assert answer.status_code == 504 and "deadline passed" in answer.json()["detail"]
    assert len(ForecastStore(service.cfg.stores.forecasts.location).issue_times("syn")) == 0


def test_a_replica_that_dies_mid_forecast_is_a_503_with_the_reason(local_service):
    """The model's replica killed while it forecasts (the fault drill's SIGKILL, an OOM): the
    answer is 503 saying so, not a bare 500 "Internal Server Error", and nothing is stored."""
    from ray.exceptions import ActorDiedError

    def died(args):
        def result(timeout_s=None):
            raise ActorDiedError()

        return SimpleNamespace(result=result, cancel=lambda: None)

    service, app = local_service
    service.model = SimpleNamespace(forecast=SimpleNamespace(remote=died))
    body = {"domain": "syn", "issue_time": "2026-06-01T01:30", "method": "motionrnn"}
    answer = post(app, body)
    assert answer.status_code == 503, answer.text
    assert "replica died while forecasting" in answer.json()["detail"]
    assert len(ForecastStore(service.cfg.stores.forecasts.location).issue_times("syn")) == 0
