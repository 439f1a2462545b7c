"""Prefect flows: thin orchestration over ``pipelines`` (retries, task runners, artifacts)."""
