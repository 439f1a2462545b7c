"""Prefect flows: thin orchestration over ``pipelines`` (retries, task runners, artifacts)."""


def one_at_a_time():
    """A deployment's concurrency: one run at a time, a run due while one runs cancelled (not
    queued: a late cycle or ingest has no value, the next one comes anyway)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
