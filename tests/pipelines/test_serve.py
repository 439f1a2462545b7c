"""The forecast service for real: Ray Serve on loopback, a real archive, registry and store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from pipelines.forecast.store import open_forecasts
from tests.conftest import promoted_registry, start_service

pytestmark = pytest.mark.slow
TOKEN = "test-token-5d1f"


@pytest.fixture(scope="module")
def service(ray_local, truth_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    from ray import serve

    root = tmp_path_factory.mktemp("service")
    cfg = start_service(
        [
            f"store.archive={truth_archive}",
            f"forecast.store={root / 'forecasts'}",
            f"forecast.registry={promoted_registry(root)}",
            f"serve.token={TOKEN}",
        ]
    )
    client = httpx.Client(
        base_url=cfg.serve.client_url(), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    )
    yield cfg, client, root
    client.close()
    serve.shutdown()


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
    ds = open_forecasts(cfg.forecast.store, "syn")
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
    assert health.status_code == 200 and health.json() == {"status": "ok", "model_version": "v0001"}
    assert anonymous.get("/v1/forecasts/nowhere/latest", headers=client.headers).status_code == 404


def test_the_openapi_schema_fuzzed_gets_no_server_error(service):
    """schemathesis generates requests from the OpenAPI schema (bounded: 40 per operation,
    loopback only); none may get a 5xx, and the service stays up."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    cfg, client, _ = service
    schema = schemathesis.openapi.from_url(f"{cfg.serve.client_url()}/openapi.json")
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
    ds = open_forecasts(cfg.forecast.store, "syn")
    assert np.isfinite(ds.precip.sel(issue_time="2026-06-01T04:50").values).any()


def test_with_no_promoted_model_a_model_forecast_is_a_503_that_says_so(service, tmp_path):
    """A second app (route /nomodel) over a registry with nothing promoted: 503 in one line."""
    from ray import serve

    from pipelines.config import load_config
    from pipelines.registry import Registry
    from pipelines.serve.app import build

    cfg, client, root = service
    Registry(tmp_path / "registry").versions_dir.mkdir(parents=True)
    settings = [f"forecast.registry={tmp_path / 'registry'}", f"forecast.store={tmp_path / 'f'}"]
    other = load_config(None, [f"store.archive={cfg.store.archive}", *settings])
    serve.run(build(other), name="nomodel", route_prefix="/nomodel")
    try:
        health = client.get("/nomodel/healthz").json()
        assert health == {"status": "ok", "model_version": None}
        refused = client.post("/nomodel/v1/forecasts", json={"domain": "syn"})
        assert refused.status_code == 503
        assert refused.json()["detail"] == f"{tmp_path / 'registry'}: no model is promoted"
        fallback = client.post("/nomodel/v1/forecasts", json={"domain": "syn", "method": "sprog"})
        assert fallback.status_code == 201 and fallback.json()["method"] == "sprog"
    finally:
        serve.delete("nomodel")
