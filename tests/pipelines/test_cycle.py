"""The forecast cycle's rules under faults: one deadline for every domain, catch-up of missed
issue times, each domain's outcome independent, outcomes that say what the store holds, and the
fallback's choice. The service is a real HTTP server on loopback that misbehaves on purpose;
the stores are real (the cycle with the real Serve app: tests/flows/test_forecast_flow.py)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.forecast.cycle import run_cycle
from pipelines.forecast.store import ForecastStore, open_forecasts

START = pd.Timestamp("2026-06-01")


def _frames(domain: str, minutes: int, size: int = 32):
    from pipelines.grid import Grid
    from pipelines.simulate import truth_frames

    edge = size * 2000.0
    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + edge, 3.0e6 + edge), 2000.0)
    return list(truth_frames(domain, grid, START, minutes, seed=0))


@pytest.fixture
def two_domains(tmp_path: Path):
    """An archive of two domains ('north', 'south'), 00:00-00:40 (complete windows end at
    00:25 .. 00:40), and the settings of a cycle over it."""
    from pipelines.store import Archive

    archive = Archive(tmp_path / "archive", create=True)
    for domain in ("north", "south"):
        archive.write(_frames(domain, 40), f"{domain} 00:00-00:40")
    settings = [
        f"stores.archive.location={tmp_path / 'archive'}",
        f"stores.forecasts.location={tmp_path / 'forecasts'}",
        "forecast.deadline_seconds=1.5",
        "forecast.max_input_age_minutes=5",
        "forecast.fallback=extrapolation",
    ]
    return tmp_path, settings


class _Service(http.server.ThreadingHTTPServer):
    """A stand-in for the forecast service: ``behave(body) -> (seconds to wait, status, raw
    answer)``; records each request's body."""

    daemon_threads = True

    def __init__(self, behave):
        self.behave, self.bodies = behave, []
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        wait, status, answer = self.server.behave(body)
        time.sleep(wait)
        try:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(answer)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


def _cycle(settings, service: _Service, now: str, **kw):
    from pipelines.forecast.cycle import ServiceClient

    cfg = load_config(None, settings)
    return run_cycle(cfg, now=pd.Timestamp(now), service=ServiceClient(cfg, service.url), **kw)


def test_one_deadline_holds_for_every_domain_and_each_request_carries_the_time_left(two_domains):
    """A service that never answers in time: both domains' forecasts are asked at once and
    abandoned at the cycle's one deadline (1.5 s), not one deadline per domain in turn."""
    root, settings = two_domains
    service = _Service(lambda body: (5.0, 200, b"{}"))
    started = time.monotonic()
    done = _cycle(settings, service, "2026-06-01T00:41")
    asked = time.monotonic() - started
    assert sorted((o.domain, o.action, o.method) for o in done) == [
        ("north", "fallback", "extrapolation"),
        ("south", "fallback", "extrapolation"),
    ]
    assert all(
        o.reason.startswith("forecast service: no answer by the cycle's deadline") for o in done
    )
    assert asked < 1.5 + 3.0  # one deadline (two in turn took 2 x 1.5 s + fallbacks before)
    assert sorted(b["domain"] for b in service.bodies) == ["north", "south"]
    assert all(0 < b["deadline_seconds"] <= 1.5 for b in service.bodies)
    service.shutdown()


def test_the_next_cycle_issues_every_due_time_a_missed_cycle_left(two_domains):
    """Cycles at 00:26 and 00:31 never ran: the 00:41 cycle issues 00:40, 00:35 (newest first)
    and 00:30, 00:25 as well, all within forecast.max_input_age_minutes (16); then none is due
    twice, and an hour later the input is stale."""
    root, settings = two_domains
    service = _Service(lambda body: (0.0, 503, b'{"detail": "no model in service"}'))
    settings = [*settings, "forecast.max_input_age_minutes=16"]
    done = _cycle(settings, service, "2026-06-01T00:41")
    north = [(o.issue_time[11:16], o.action) for o in done if o.domain == "north"]
    assert north == [("00:40", "fallback"), ("00:35", "fallback"), ("00:30", "fallback"),
                     ("00:25", "fallback")]  # fmt: skip
    assert done[0].reason.startswith("forecast service: HTTP 503: no model in service")
    again = _cycle(settings, service, "2026-06-01T00:42")
    assert [o.action for o in again] == ["exists", "exists"]  # nothing twice
    late = _cycle(settings, service, "2026-06-01T01:00")
    assert [o.action for o in late] == ["stale", "stale"]
    ds = open_forecasts(root / "forecasts", "north")
    assert pd.DatetimeIndex(ds.issue_time.values).strftime("%H:%M").tolist() == [
        "00:25", "00:30", "00:35", "00:40"
    ]  # fmt: skip
    service.shutdown()


def test_one_domains_fault_leaves_the_others_their_forecast(two_domains):
    """A non-JSON 200 for 'north' (fallback, with the reason) and a store fault in 'south''s
    fallback (its group holds another grid): 'north' is issued, 'south' reported failed."""
    root, settings = two_domains
    from pipelines.forecast.issue import make_forecast, read_inputs
    from pipelines.nowcast import get_method
    from pipelines.store import Archive

    small = Archive(root / "other", create=True)
    small.write(_frames("south", 30, size=16), "a smaller south")
    inputs = read_inputs(small, "south", 6)
    ForecastStore(root / "forecasts", create=True).write(
        make_forecast(inputs, get_method("persistence"), 60)
    )

    def behave(body):
        return (0.0, 200, b"<html>a proxy page</html>") if body["domain"] == "north" else (
            0.0, 503, b'{"detail": "down"}')  # fmt: skip

    service = _Service(behave)
    done = {o.domain: o for o in _cycle(settings, service, "2026-06-01T00:41")}
    assert (done["north"].action, done["north"].method) == ("fallback", "extrapolation")
    assert "not a forecast summary" in done["north"].reason
    assert done["south"].action == "failed"
    assert "holds forecasts on another grid" in done["south"].reason
    assert "\n" not in done["south"].reason
    assert open_forecasts(root / "forecasts", "north").sizes["issue_time"] == 1
    service.shutdown()


def test_a_late_commit_by_the_service_is_reported_as_what_the_store_holds(
    two_domains, monkeypatch: pytest.MonkeyPatch
):
    """The service commits its forecast while the cycle computes the fallback: the fallback
    loses the write and the outcome reports the service's forecast, as the store holds it."""
    root, settings = two_domains
    import pipelines.forecast.cycle as cycle
    from pipelines.forecast.issue import issue
    from pipelines.nowcast import get_method
    from pipelines.store import Archive

    real = cycle.from_config

    class LateCommit:
        """The fallback's forecaster, during whose run the service's forecast is committed."""

        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        def __call__(self, frames, n_out):
            archive = Archive(root / "archive")
            store = ForecastStore(root / "forecasts", create=True)
            for domain in ("north", "south"):
                persistence = get_method("persistence")  # the "model" of this service
                issue(archive, store, persistence, domain, 6, 60, pd.Timestamp("2026-06-01T00:40"))
            return self.inner(frames, n_out)

    monkeypatch.setattr(cycle, "from_config", lambda *a, **k: LateCommit(real(*a, **k)))
    service = _Service(lambda body: (5.0, 200, b"{}"))
    done = _cycle(settings, service, "2026-06-01T00:41", domains=["north"])
    (outcome,) = done
    assert (outcome.action, outcome.method) == ("issued", "persistence")
    assert outcome.reason == "stored by the service after the cycle's deadline"
    ds = open_forecasts(root / "forecasts", "north")
    assert ds.method.values.tolist() == ["persistence"]
    service.shutdown()


def test_the_auto_fallback_is_sprog_up_to_its_cell_limit_then_extrapolation(two_domains):
    root, settings = two_domains
    settings = [s for s in settings if not s.startswith("forecast.fallback")]
    service = _Service(lambda body: (0.0, 503, b'{"detail": "down"}'))
    done = _cycle(settings, service, "2026-06-01T00:41", domains=["north"])
    assert (done[0].method, done[0].reason) == (
        "sprog",
        "forecast service: HTTP 503: down; fallback sprog",
    )
    big = _cycle([*settings, "forecast.sprog_max_cells=1000"], service, "2026-06-01T00:41",
                 domains=["south"])  # fmt: skip
    assert big[0].method == "extrapolation"
    assert big[0].reason.endswith("(1024 cells > forecast.sprog_max_cells (1000))")
    ds = open_forecasts(root / "forecasts", "north")
    assert ds.method.values.tolist() == ["sprog"]
    assert np.isfinite(ds.precip.values).any()
    service.shutdown()
