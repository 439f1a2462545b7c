"""notebooks/quickstart.ipynb runs top to bottom on stores built here (nbclient, a real kernel)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipelines.verification.verify import verify

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow


def test_the_quickstart_runs_on_real_stores(issued, monkeypatch: pytest.MonkeyPatch):
    cfg, _ = issued
    (done,) = verify(cfg)
    assert done.scored == 7
    monkeypatch.setenv("MOTIONCAST_ARCHIVE", str(cfg.stores.archive.location))
    monkeypatch.setenv("MOTIONCAST_FORECASTS", str(cfg.stores.forecasts.location))
    monkeypatch.setenv("MOTIONCAST_SCORES", str(cfg.stores.scores.location))
    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=dict(os.environ))  # raises CellExecutionError on any failing cell
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "issued 2026-06-01 02:25:00 by extrapolation" in text
    assert "7 issues from 2026-06-01 00:25:00 to 2026-06-01 01:55:00" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the maps and the skill curves
