"""Verification as a Prefect flow, and its deployment.

``verify_flow`` scores every stored forecast whose valid times the archive has since observed
and that is not scored yet (``pipelines.verification.verify``), beside the baselines on the same
cells, into the scores store (one commit per domain; a rerun scores nothing twice), and leaves a
markdown artifact ``verification`` with what it scored and the scores of the last 24 hours.
``deployment(cfg)`` runs it on ``verify.cron`` (hourly), one run at a time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows import one_at_a_time
from pipelines.config import MotioncastConfig, load_config
from pipelines.scoring.scores import metric_name
from pipelines.verification.store import ScoresStore
from pipelines.verification.verify import VerifyOutcome, verify

RECENT = pd.Timedelta(hours=24)  # the artifact's table pools this far back


def _markdown(outcomes: list[VerifyOutcome], store: ScoresStore, thresholds: list[float]) -> str:
    lines = [
        "# Verification",
        "",
        "| domain | scored now | waiting | commit |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {o.domain} | {o.scored} | {o.waiting} | {o.snapshot or o.error or '-'} |"
        for o in outcomes
    ]
    csi = " | ".join(f"CSI {t:g} mm/h" for t in thresholds)
    lines += ["", f"| domain | method | issues (24 h) | {csi} | MAE |"]
    lines += ["|---" * (4 + len(thresholds)) + "|"]
    for domain in store.domains():
        scored = store.scored(domain)  # the last 24 hours of issues, the newest included
        since = scored[-1] - RECENT + pd.Timedelta(seconds=1) if len(scored) else None
        pooled = store.pool(domain, since=since)
        for method, scores in pooled.scores.items():
            s = scores.summary()
            values = " | ".join(str(s.get(metric_name(t))) for t in thresholds)
            lines.append(f"| {domain} | {method} | {pooled.issues} | {values} | {s.get('mae')} |")
    return "\n".join(lines)


@flow(name="verification")
def verify_flow(
    config_file: str | None = None,
    overrides: list[str] | None = None,
    domains: list[str] | None = None,
) -> list[dict]:
    """Score what is due; the outcome per domain."""
    cfg = load_config(Path(config_file) if config_file else None, overrides)
    outcomes = verify(cfg, domains)
    logger = get_run_logger()
    for o in outcomes:
        logger.info("%s: %d scored, %d wait for observations", o.domain, o.scored, o.waiting)
    store = ScoresStore.from_config(cfg.stores)
    create_markdown_artifact(
        markdown=_markdown(outcomes, store, cfg.verify.thresholds_mm_h),
        key="verification",
        description="Forecast scores",
    )
    return [vars(o) for o in outcomes]


def deployment(cfg: MotioncastConfig, config_file: str | None = None, overrides=None):
    """The verification flow on its schedule, one run at a time."""
    return verify_flow.to_deployment(
        name="verification",
        cron=cfg.verify.cron,
        concurrency_limit=one_at_a_time(),
        parameters={"config_file": config_file, "overrides": overrides},
        description="Hourly: score the forecasts whose valid times have been observed.",
    )
