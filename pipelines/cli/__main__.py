"""``python -m pipelines.cli ARGS``: the ``motioncast`` command."""

from pipelines.cli import app

app()
