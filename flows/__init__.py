"""Prefect flows: thin orchestration over ``pipelines`` (retries, task runners, artifacts), and
the whole system on this machine that serves them (``local``: ``motioncast up``, ``down``,
``status``; ``supervise``: its supervisor; ``serving``: the process serving the flows and the
forecast service)."""

CYCLE = "forecast-cycle"  # the forecast cycle's flow and deployment


def one_at_a_time():
    """A deployment's concurrency: one run at a time, a run due while one runs cancelled (not
    queued: a late cycle or ingest has no value, the next one comes anyway)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
