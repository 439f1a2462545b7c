"""Scoring issued forecasts against what the radar then observed, beside the baselines.

A stored forecast is due once the archive's newest frame has reached its last valid time and
its issue time is not in the scores store. It is scored with the baselines (``verify.baselines``)
run on its own input frames, every method on the same cells: observed, and valued by every
method (pipelines.scoring.scores). A valid time the archive never got contributes no cells.

    done = verify(cfg)                # every domain, what is due; one commit per domain
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from pipelines.config import MotioncastConfig, VerifyConfig
from pipelines.forecast.store import ForecastStore, ForecastStoreError
from pipelines.nowcast import get_method, transform_of
from pipelines.nowcast.motion import motion_field
from pipelines.scoring.scores import Scores, ScoreSpec
from pipelines.store.archive import Archive
from pipelines.store.repository import StoreError
from pipelines.verification.store import ISSUED, ScoresStore, Verified

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyOutcome:
    domain: str
    scored: int  # issue times scored in this run
    waiting: int  # stored forecasts whose valid times the archive has not reached yet
    snapshot: str | None  # the scores store's commit, None when nothing was new
    error: str = ""  # why the domain was not verified


def score_spec(cfg: VerifyConfig, leads: int) -> ScoreSpec:
    return ScoreSpec(
        leads,
        tuple(cfg.thresholds_mm_h),
        tuple(cfg.fss_thresholds_mm_h),
        tuple(cfg.fss_scales),
    )


def observed_at(frames: xr.Dataset, times: pd.DatetimeIndex) -> np.ndarray:
    """The archive's rain rate at ``times``, NaN where it holds no frame (any slot or none)."""
    present = frames.present.reindex(time=times, fill_value=False).values.astype(bool)
    values = frames.precip.reindex(time=times).values.astype(np.float32)
    values[~present] = np.nan
    return values


def due(
    frames: xr.Dataset,
    forecasts: ForecastStore,
    scores: ScoresStore,
    domain: str,
    grace: pd.Timedelta,
) -> tuple[list[pd.Timestamp], int]:
    """Issue times of the domain to score now (oldest first), given its archive ``frames``:
    every valid time observed, or the newest frame ``grace`` past the last; and how many
    stored ones still wait."""
    present = pd.DatetimeIndex(frames.time.values[frames.present.values.astype(bool)])
    if not len(present):
        return [], 0
    newest = present[-1]
    leads = pd.to_timedelta(forecasts.dataset(domain).lead_time.values)
    todo = forecasts.issue_times(domain).difference(scores.scored(domain))
    ready = [t for t in todo if (t + leads).isin(present).all() or t + leads[-1] + grace <= newest]
    return ready, len(todo) - len(ready)


def verify_issue(
    frames: xr.Dataset,
    inputs_at: Callable[[str], xr.Dataset],
    forecasts: ForecastStore,
    domain: str,
    issue_time: pd.Timestamp,
    cfg: MotioncastConfig,
) -> Verified:
    """The scores of one stored forecast and of each baseline on its input frames as the
    forecast read them (``inputs_at(archive snapshot)``: frames that came later are not
    the baselines' either)."""
    f = forecasts.forecast(domain, issue_time)
    leads = len(f.lead_minutes)
    observed = observed_at(frames, f.valid_times)
    inputs = observed_at(inputs_at(f.archive_snapshot), pd.DatetimeIndex(f.input_times))
    velocity = motion_field(inputs, transform_of(cfg))
    values = {ISSUED: f.values}
    for name in cfg.verify.baselines:
        values[name], _ = get_method(name)(inputs, leads, velocity)
    cells = np.isfinite(observed)
    for v in values.values():
        cells &= np.isfinite(v)
    spec = score_spec(cfg.verify, leads)
    scores = {}
    for name, v in values.items():
        scores[name] = Scores(spec)
        scores[name].add(v, observed, cells)
    return Verified(issue_time, f.method, f.model_version, scores)


def _snapshots(archive: Archive, domain: str, latest: xr.Dataset) -> Callable[[str], xr.Dataset]:
    """The domain's frames as of an archive snapshot, each opened once; the latest commit's
    when that snapshot is no longer kept."""
    opened: dict[str, xr.Dataset] = {}

    def at(snapshot: str) -> xr.Dataset:
        if snapshot not in opened:
            try:
                opened[snapshot] = archive.dataset(domain, snapshot)
            except StoreError:
                log.warning("%s: archive snapshot %s not kept: inputs as of now", domain, snapshot)
                opened[snapshot] = latest
        return opened[snapshot]

    return at


def verify(
    cfg: MotioncastConfig,
    domains: list[str] | None = None,
    on_scored: Callable[[str, int, int], None] | None = None,
) -> list[VerifyOutcome]:
    """Score every due forecast of ``domains`` (default: every domain with forecasts), one
    commit per domain to the scores store (``stores.scores``, created when absent).
    ``on_scored(domain, done, due)`` follows the progress. A domain that cannot be scored
    (not in the archive, say) is reported in its outcome and the others go on."""
    archive = Archive.from_config(cfg.stores)
    try:
        forecasts = ForecastStore.from_config(cfg.stores)
    except ForecastStoreError as exc:  # nothing issued yet
        log.info("nothing to verify: %s", exc)
        return []
    scores = ScoresStore.from_config(cfg.stores, create=True)
    grace = pd.Timedelta(minutes=cfg.verify.grace_minutes)
    outcomes = []
    for domain in domains or forecasts.domains():
        try:
            frames = archive.dataset(domain)
            times, waiting = due(frames, forecasts, scores, domain, grace)
            inputs_at = _snapshots(archive, domain, frames)
            verified = []
            for t in times:
                log.debug("%s %s: scoring", domain, t.isoformat())
                verified.append(verify_issue(frames, inputs_at, forecasts, domain, t, cfg))
                if on_scored is not None:
                    on_scored(domain, len(verified), len(times))
            snapshot = scores.write(domain, verified)
        except StoreError as exc:
            log.warning("%s: not verified: %s", domain, exc)
            outcomes.append(VerifyOutcome(domain, 0, 0, None, str(exc)))
            continue
        outcomes.append(VerifyOutcome(domain, len(verified), waiting, snapshot))
        log.info("%s: %d forecasts scored, %d wait for observations", domain, len(times), waiting)
    return outcomes
