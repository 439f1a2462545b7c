"""One forecast cycle: per domain, what is due, the forecast service, and the fallback.

Per domain, the due issue times are every complete input window in the archive that ends at
most ``forecast.max_input_age_minutes`` before ``now`` and is not stored yet (so issue times
missed while something was down are caught up by the next cycle; at most
``forecast.catch_up_max``, newest first). Nothing is issued when the newest window is older than
that (stale input: the reason is reported). With ``catch_up`` every complete window since the
newest stored forecast is due, however old (a backfill).

One deadline (``forecast.deadline_seconds`` from the cycle's start) holds for every domain: the
forecast service (``pipelines.serve``) is asked for all due forecasts at once, newest first,
each request carrying the time left so that the service gives up (stores nothing) when it
passes; what is not answered by then is abandoned (the connection closed) and issued by the
fallback (``forecast.fallback``; ``auto``: pysteps S-PROG up to ``forecast.sprog_max_cells``
cells, else extrapolation), recorded in the store with the reason. Each domain's outcome is
independent: an error in one is reported for it and the others go on. An outcome reports what
the store holds: when the service committed after the cycle gave up on it, the fallback finds
its forecast there and the outcome says so.

``flows/forecast.py`` runs it on a schedule; it works without Prefect as well.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass

import httpx
import numpy as np
import pandas as pd

from pipelines.config import MotioncastConfig
from pipelines.errors import error_line, one_line
from pipelines.forecast.issue import complete_windows, issue
from pipelines.forecast.store import ForecastStore
from pipelines.nowcast import from_config
from pipelines.store.archive import Archive
from pipelines.store.timeaxis import naive_utc

log = logging.getLogger(__name__)

REASON_CHARS = 200  # an outcome's reason is one line of the cycle's log and status table


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
    """The forecast service's HTTP API, as the cycle uses it (thread-safe: one connection
    pool for the cycle's concurrent requests)."""

    def __init__(self, cfg: MotioncastConfig, url: str | None = None):
        self.url = url or cfg.serve.client_url()
        token = cfg.serve.bearer_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, headers=headers)

    def issue(self, domain: str, issue_time: pd.Timestamp, method: str, seconds: float) -> dict:
        """Ask the service for one forecast, giving it ``seconds`` (it stores nothing once they
        have passed); its summary, or ServiceError. The connection is closed when they pass."""
        body = {
            "domain": domain,
            "issue_time": issue_time.isoformat(),
            "method": method,
            "deadline_seconds": round(max(seconds, 0.001), 3),
        }
        try:
            response = self.client.post("/v1/forecasts", json=body, timeout=max(seconds, 0.001))
        except httpx.TimeoutException:
            raise ServiceError("no answer by the cycle's deadline") from None
        except httpx.HTTPError as exc:
            raise ServiceError(f"unreachable at {self.url} ({type(exc).__name__})") from None
        if response.status_code not in (200, 201):
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(
                f"HTTP {response.status_code}: {one_line(str(detail), REASON_CHARS)}"
            )
        try:
            summary = response.json()
            return {k: summary[k] for k in ("issue_time", "status", "method", "model_version")}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ServiceError(f"an answer that is not a forecast summary ({exc!r:.80})") from None

    def close(self) -> None:
        self.client.close()


def due(
    archive: Archive,
    forecasts: ForecastStore,
    domain: str,
    cfg: MotioncastConfig,
    now: pd.Timestamp,
    catch_up: bool,
) -> tuple[list[pd.Timestamp], Outcome | None]:
    """Issue times to forecast now (newest first), or the outcome that says why none."""
    f = cfg.forecast
    complete = complete_windows(archive, domain, f.frames_in)
    if not len(complete):
        return [], Outcome(domain, None, "none", reason=f"no {f.frames_in} consecutive frames")
    newest = complete[-1]
    age = (now - newest) / pd.Timedelta(minutes=1)
    if age > f.max_input_age_minutes and not catch_up:
        reason = (
            f"newest input {newest.isoformat()} is {age:.0f} min old "
            f"(max {f.max_input_age_minutes:g}): nothing issued"
        )
        return [], Outcome(domain, newest.isoformat(), "stale", reason=reason)
    stored = forecasts.issue_times(domain)
    if catch_up:
        after = stored[-1] if len(stored) else complete[0] - pd.Timedelta(minutes=1)
        todo = complete[complete > after]
    else:
        oldest = now - pd.Timedelta(minutes=f.max_input_age_minutes)
        todo = complete[(complete >= oldest) & ~complete.isin(stored)]
    if not len(todo):
        return [], Outcome(domain, newest.isoformat(), "exists")
    return list(todo[::-1][: f.catch_up_max]), None


def fallback_method(cfg: MotioncastConfig, cells: int) -> tuple[str, str]:
    """The fallback for a domain of ``cells`` cells, and why (empty when configured as is)."""
    f = cfg.forecast
    if f.fallback != "auto":
        return f.fallback, ""
    if cells <= f.sprog_max_cells:
        return "sprog", ""
    return "extrapolation", f"{cells} cells > forecast.sprog_max_cells ({f.sprog_max_cells})"


def run_cycle(
    cfg: MotioncastConfig,
    domains: list[str] | None = None,
    now: pd.Timestamp | None = None,
    catch_up: bool = False,
    service: ServiceClient | None = None,
) -> list[Outcome]:
    """One cycle over ``domains`` (default: every archive domain); ``now`` (default the wall
    clock, UTC) decides what is due and what is stale. One outcome per due issue time, or one
    per domain saying why none was due or what failed."""
    deadline = time.monotonic() + cfg.forecast.deadline_seconds
    now = naive_utc(pd.Timestamp.now("UTC")) if now is None else naive_utc(pd.Timestamp(now))
    f = cfg.forecast
    archive = Archive.from_config(cfg.stores)
    forecasts = ForecastStore.from_config(cfg.stores, create=True)
    outcomes: list[Outcome] = []
    todo: list[tuple[str, pd.Timestamp]] = []
    for domain in domains or archive.domains():
        try:
            times, skipped = due(archive, forecasts, domain, cfg, now, catch_up)
        except Exception as exc:  # one domain's fault is its own outcome
            outcomes.append(_failed(domain, None, "", exc))
            continue
        if skipped is not None:
            log.info("%s: %s %s", domain, skipped.action, skipped.reason)
            outcomes.append(skipped)
        todo += [(domain, t) for t in times]
    todo.sort(key=lambda job: job[1], reverse=True)  # the newest issue times first
    owned = service is None
    service = service or ServiceClient(cfg)
    try:
        answers = _ask_service(service, todo, f.method, deadline, cfg.serve.max_batch_size)
    finally:
        if owned:
            service.close()
    for domain, issue_time in todo:
        answer = answers[(domain, issue_time)]
        if isinstance(answer, Outcome):
            outcomes.append(answer)
        else:
            outcomes.append(_fall_back(archive, forecasts, domain, issue_time, cfg, answer))
    return outcomes


def _ask_service(
    service: ServiceClient,
    todo: list[tuple[str, pd.Timestamp]],
    method: str,
    deadline: float,
    parallel: int,
) -> dict[tuple[str, pd.Timestamp], Outcome | str]:
    """Every due forecast asked of the service, ``parallel`` at a time, until ``deadline``:
    per issue time its outcome, or why the service did not make it (the fallback's reason)."""
    answers: dict[tuple[str, pd.Timestamp], Outcome | str] = {}

    def ask(domain: str, issue_time: pd.Timestamp) -> Outcome | str:
        start = time.perf_counter()
        try:
            summary = service.issue(domain, issue_time, method, deadline - time.monotonic())
        except ServiceError as exc:
            return f"forecast service: {exc}"
        return Outcome(
            domain,
            summary["issue_time"],
            "exists" if summary["status"] == "exists" else "issued",
            summary["method"],
            summary["model_version"] or "",
            seconds=round(time.perf_counter() - start, 3),
        )

    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="cycle")
    running: dict[Future, tuple[str, pd.Timestamp]] = {}
    queue = list(todo)
    try:
        while queue or running:
            while queue and len(running) < parallel and time.monotonic() < deadline:
                job = queue.pop(0)
                running[pool.submit(ask, *job)] = job
            if not running:
                break  # the deadline passed with issue times never asked
            done, _ = wait(
                running,
                timeout=max(0.0, deadline - time.monotonic()) + 1.0,
                return_when=FIRST_COMPLETED,
            )
            for future in done:
                answers[running.pop(future)] = future.result()
    finally:
        pool.shutdown(wait=True)  # each request ends by the deadline (its own timeout)
    for job in queue:
        answers[job] = "forecast service: not asked before the cycle's deadline"
    return answers


def _fall_back(
    archive: Archive,
    forecasts: ForecastStore,
    domain: str,
    issue_time: pd.Timestamp,
    cfg: MotioncastConfig,
    reason: str,
) -> Outcome:
    """The fallback's forecast, with the service's failure as its reason; the outcome says
    what the store holds afterwards."""
    f = cfg.forecast
    start = time.perf_counter()
    method = f.fallback
    try:
        cells = int(np.prod(archive.dataset(domain).precip.shape[1:]))
        method, why = fallback_method(cfg, cells)
        reason = f"{reason}; fallback {method}" + (f" ({why})" if why else "")
        log.warning("%s %s: %s", domain, issue_time, reason)
        forecaster = from_config(method, cfg)
        done = issue(
            archive,
            forecasts,
            forecaster,
            domain,
            f.frames_in,
            f.lead_minutes,
            issue_time,
            reason=reason,
        )
        seconds = round(time.perf_counter() - start, 3)
        if done.stored:
            return Outcome(domain, issue_time.isoformat(), "fallback", method, "", reason, seconds)
        held = forecasts.summary(domain, done.issue_time)  # what beat the fallback to the store
    except Exception as exc:  # one domain's fault is its own outcome
        return _failed(domain, issue_time, method, exc)
    by_service = not held["reason"]  # the service committed after the cycle gave up on it
    return Outcome(
        domain,
        issue_time.isoformat(),
        "issued" if by_service else "exists",
        str(held["method"]),
        str(held["model_version"] or ""),
        "stored by the service after the cycle's deadline" if by_service else "",
        round(time.perf_counter() - start, 3),
    )


def _failed(domain: str, issue_time: pd.Timestamp | None, method: str, exc: Exception) -> Outcome:
    """A domain's unexpected error, as its outcome (logged with its trace)."""
    log.exception("%s %s: %s", domain, issue_time, type(exc).__name__)
    when = None if issue_time is None else issue_time.isoformat()
    return Outcome(domain, when, "failed", method, reason=error_line(exc, REASON_CHARS))
