"""The forecast cycle and store maintenance as Prefect flows, and their deployments.

- ``forecast_flow``: one cycle (``pipelines.forecast.cycle``): per domain every due issue time
  (complete input windows within ``forecast.max_input_age_minutes`` not yet forecast, so the
  times a cancelled, late or failed cycle missed are caught up), made by the forecast service
  under one deadline for the cycle, or by the fallback (pysteps S-PROG or extrapolation) when
  the service is down, failing or late; a markdown artifact says what it did.
- ``maintenance_flow``: expires the snapshots of the forecast store and the scores store older
  than their audit windows (``stores.forecasts.audit_days``, ``stores.scores.audit_days``) and
  deletes the data only they held; a store not made yet is skipped.

``deployments(cfg)`` gives both on their cron schedules (``forecast.cron``, a minute after each
5-minute radar time; ``forecast.maintenance_cron``, daily), each with at most one run at a time:
a run due while one is running is cancelled, not queued (the next run issues what it missed).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows import CYCLE, one_at_a_time
from pipelines.config import MotioncastConfig, load_config
from pipelines.forecast.cycle import Outcome, run_cycle
from pipelines.forecast.store import ForecastStore
from pipelines.simulate.clock import SimClock
from pipelines.store.repository import open_repository
from pipelines.verification.store import ScoresStore


def _config(config_file: str | None, overrides: list[str] | None) -> MotioncastConfig:
    return load_config(Path(config_file) if config_file else None, overrides)


def _markdown(outcomes: list[Outcome], now: pd.Timestamp) -> str:
    lines = [
        f"# Forecast cycle at {now.isoformat()}",
        "",
        "| domain | issue time | action | method | model | seconds | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.domain} | {o.issue_time or '-'} | {o.action} | {o.method or '-'} | "
            f"{o.model_version or '-'} | {o.seconds:g} | {o.reason or '-'} |"
        )
    return "\n".join(lines)


@flow(name=CYCLE)
def forecast_flow(
    config_file: str | None = None,
    overrides: list[str] | None = None,
    domains: list[str] | None = None,
    now: str | None = None,
    catch_up: bool = False,
    clock_file: str | None = None,
) -> list[dict]:
    """One forecast cycle; ``now`` (UTC; default: the simulated clock of ``clock_file``, else
    the wall clock) decides what input is stale."""
    logger = get_run_logger()
    cfg = _config(config_file, overrides)
    if now is not None:
        clock = pd.Timestamp(now)
    elif clock_file is not None:
        clock = SimClock.load(Path(clock_file)).now()
    else:
        clock = pd.Timestamp.now("UTC").tz_localize(None)
    outcomes = run_cycle(cfg, domains, clock, catch_up)
    for o in outcomes:
        logger.info(
            "%s %s: %s %s %s %s",
            o.domain,
            o.issue_time,
            o.action,
            o.method,
            o.model_version,
            o.reason,
        )
    create_markdown_artifact(
        markdown=_markdown(outcomes, clock),
        key=CYCLE,
        description="What the forecast cycle issued",
    )
    return [o.as_dict() for o in outcomes]


@flow(name="store-maintenance")
def maintenance_flow(
    config_file: str | None = None, overrides: list[str] | None = None
) -> dict[str, dict[str, int]]:
    """Expire the forecast and scores stores' snapshots older than their audit windows and
    collect their data; what each store lost, by store."""
    cfg = _config(config_file, overrides)
    logger = get_run_logger()
    done = {}
    for kind in (ForecastStore, ScoresStore):
        name, settings = kind.section, getattr(cfg.stores, kind.section)
        if (
            open_repository(settings.location, create=False, options=cfg.stores.object_storage)
            is None
        ):
            logger.info("%s: no store at %s yet, nothing to maintain", name, settings.location)
            continue
        kept = kind.from_config(cfg.stores).maintain(pd.Timedelta(days=settings.audit_days))
        logger.info("%s: %s", name, kept)
        done[name] = asdict(kept)
    return done


def deployments(
    cfg: MotioncastConfig,
    config_file: str | None = None,
    overrides=None,
    clock: SimClock | None = None,
    clock_file: str | None = None,
) -> list:
    """The cycle and maintenance deployments on their schedules, one run at a time each. With a
    simulated ``clock`` (saved in ``clock_file``) the cycle runs every 5 simulated minutes."""
    one = one_at_a_time()
    parameters = {"config_file": config_file, "overrides": overrides}
    when = {"cron": cfg.forecast.cron}
    if clock is not None:
        when = {"interval": 300.0 / clock.speed}
    return [
        forecast_flow.to_deployment(
            name=CYCLE,
            **when,
            concurrency_limit=one,
            parameters={**parameters, "clock_file": clock_file},
            description="Every 5 minutes: a forecast per domain into the forecast store.",
        ),
        maintenance_flow.to_deployment(
            name="store-maintenance",
            cron=cfg.forecast.maintenance_cron,
            concurrency_limit=one,
            parameters=parameters,
            description="Daily: expire old snapshots of the forecast and scores stores.",
        ),
    ]
