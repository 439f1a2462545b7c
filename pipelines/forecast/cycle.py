"""One forecast cycle: per domain, what is due, the forecast service, and the fallback.

Per domain: the newest complete input window in the archive gives the issue time; nothing is
issued when that window ends more than ``forecast.max_input_age_minutes`` before ``now`` (stale
input: the reason is reported) or when that issue time is stored already. Otherwise the forecast
service (``pipelines.serve``) is asked; when it is down, answers with an error or takes longer
than ``forecast.deadline_seconds``, the cycle issues ``forecast.fallback`` (pysteps
extrapolation) itself, recorded in the store with the reason. With ``catch_up`` every complete
window since the newest stored forecast is issued too (at most ``forecast.catch_up_max``).

``flows/forecast.py`` runs it on a schedule; it works without Prefect as well.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import httpx
import pandas as pd

from pipelines.config import MotioncastConfig
from pipelines.forecast.issue import ForecastError, complete_windows, issue
from pipelines.forecast.methods import get_forecaster
from pipelines.forecast.store import ForecastStore
from pipelines.frame_select import naive_utc
from pipelines.store.archive import Archive

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """The forecast service did not make the forecast; the message says why."""


@dataclass(frozen=True)
class Outcome:
    """What the cycle did for one domain and issue time."""

    domain: str
    issue_time: str | None
    action: str  # issued | fallback | exists | stale | failed | none
    method: str = ""
    model_version: str = ""
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class ServiceClient:
    """The forecast service's HTTP API, as the cycle uses it."""

    def __init__(self, cfg: MotioncastConfig, url: str | None = None):
        self.url = url or cfg.serve.client_url()
        self.deadline = cfg.forecast.deadline_seconds
        token = cfg.serve.bearer_token()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def issue(self, domain: str, issue_time: pd.Timestamp, method: str) -> dict:
        """Ask the service for one forecast; its summary, or ServiceError."""
        body = {"domain": domain, "issue_time": issue_time.isoformat(), "method": method}
        try:
            response = httpx.post(
                f"{self.url}/v1/forecasts", json=body, headers=self.headers, timeout=self.deadline
            )
        except httpx.TimeoutException:
            raise ServiceError(f"no answer within {self.deadline:g} s") from None
        except httpx.HTTPError as exc:
            raise ServiceError(f"unreachable at {self.url} ({type(exc).__name__})") from None
        if response.status_code not in (200, 201):
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(f"HTTP {response.status_code}: {str(detail)[:200]}")
        return response.json()


def due(
    archive: Archive,
    forecasts: ForecastStore,
    domain: str,
    cfg: MotioncastConfig,
    now: pd.Timestamp,
    catch_up: bool,
) -> tuple[list[pd.Timestamp], Outcome | None]:
    """Issue times to forecast now (oldest first), or the outcome that says why none."""
    f = cfg.forecast
    complete = complete_windows(archive, domain, f.frames_in)
    if not len(complete):
        return [], Outcome(domain, None, "none", reason=f"no {f.frames_in} consecutive frames")
    newest = complete[-1]
    age = (now - newest) / pd.Timedelta(minutes=1)
    if age > f.max_input_age_minutes:
        reason = (
            f"newest input {newest.isoformat()} is {age:.0f} min old "
            f"(max {f.max_input_age_minutes:g}): nothing issued"
        )
        return [], Outcome(domain, newest.isoformat(), "stale", reason=reason)
    stored = forecasts.issue_times(domain)
    if catch_up:
        after = stored[-1] if len(stored) else complete[0] - pd.Timedelta(minutes=1)
        todo = [t for t in complete if t > after][-f.catch_up_max :]
    else:
        todo = [] if newest in stored else [newest]
    if not todo:
        return [], Outcome(domain, newest.isoformat(), "exists")
    return todo, None


def run_cycle(
    cfg: MotioncastConfig,
    domains: list[str] | None = None,
    now: pd.Timestamp | None = None,
    catch_up: bool = False,
    service: ServiceClient | None = None,
) -> list[Outcome]:
    """One cycle over ``domains`` (default: every archive domain); ``now`` (default the wall
    clock, UTC) decides what is stale."""
    now = naive_utc(pd.Timestamp.now("UTC")) if now is None else naive_utc(pd.Timestamp(now))
    f = cfg.forecast
    archive = Archive(cfg.store.archive, storage=cfg.store.object_storage)
    forecasts = ForecastStore(
        f.store, f.chunk_yx, f.compression_level, create=True, storage=cfg.store.object_storage
    )
    service = service or ServiceClient(cfg)
    outcomes: list[Outcome] = []
    for domain in domains or archive.domains():
        todo, skipped = due(archive, forecasts, domain, cfg, now, catch_up)
        if skipped is not None:
            log.info("%s: %s %s", domain, skipped.action, skipped.reason)
            outcomes.append(skipped)
        for issue_time in todo:
            outcomes.append(_one(archive, forecasts, domain, issue_time, cfg, service))
    return outcomes


def _one(
    archive: Archive,
    forecasts: ForecastStore,
    domain: str,
    issue_time: pd.Timestamp,
    cfg: MotioncastConfig,
    service: ServiceClient,
) -> Outcome:
    """One forecast: by the service, else by the fallback with the service's failure as reason."""
    f = cfg.forecast
    start = time.perf_counter()
    try:
        summary = service.issue(domain, issue_time, f.method)
        return Outcome(
            domain,
            summary["issue_time"],
            "issued" if summary["status"] != "exists" else "exists",
            summary["method"],
            summary["model_version"] or "",
            seconds=round(time.perf_counter() - start, 3),
        )
    except ServiceError as exc:
        reason = f"forecast service: {exc}"
    log.warning("%s %s: %s; issuing %s", domain, issue_time, reason, f.fallback)
    try:
        fallback = get_forecaster(f.fallback, transform=cfg.training.data.transform)
        done = issue(
            archive,
            forecasts,
            fallback,
            domain,
            f.frames_in,
            f.lead_minutes,
            issue_time,
            reason=reason,
        )
    except ForecastError as exc:
        return Outcome(domain, issue_time.isoformat(), "failed", f.fallback, reason=str(exc))
    action = "fallback" if done.forecast is not None else "exists"
    return Outcome(
        domain,
        issue_time.isoformat(),
        action,
        f.fallback,
        reason=reason,
        seconds=round(time.perf_counter() - start, 3),
    )
