"""The command line: what its start-up imports, and `plot map --time` on a tiny archive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.frame import Frame
from pipelines.grid import Grid
from pipelines.store import Archive
from pipelines.store.timeaxis import FrameSelectError, select_frame

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "prefect", "pysteps", "xradar")


def test_cli_start_up_imports_no_heavy_library():
    """`motioncast --help` and `archive info --help` load neither torch, Ray, Prefect, pysteps
    nor xradar; nor does the registry (models list/show/promote)."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "import pipelines.cli, pipelines.config, pipelines.registry\n"
        "for args in (['--help'], ['archive', 'info', '--help'], ['ingest', '--help']):\n"
        "    r = CliRunner().invoke(pipelines.cli.app, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at start-up: {done.stdout.strip()}"


# ---- plot map --time -------------------------------------------------------------------------

GRID = Grid.from_extent("EPSG:3035", (4.0e6, 3.0e6, 4.03e6, 3.02e6), 1000.0)  # 20 x 30
T0 = pd.Timestamp("2026-06-01T12:00")
STORED = (0, 1, 2, 5, 6)  # 12:00, 12:05, 12:10, (gap) 12:25, 12:30; frame i rains i mm/h


def frame(i: int) -> Frame:
    precip = np.full(GRID.shape, float(i), dtype=np.float32)
    t = T0 + pd.Timedelta(minutes=5 * i)
    return Frame("d", t, GRID, precip, f"f{i}.h5", f"sha{i}", "test", radars="r1", product="p")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "archive"
    Archive(path, create=True).write([frame(i) for i in STORED], "frames with a gap")
    return path


@pytest.fixture
def plotted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str]]:
    """Records (the plotted field's rain rate, the title) instead of drawing."""
    import pipelines.plots

    calls: list[tuple[float, str]] = []

    def fake(values: np.ndarray, grid, out: Path, title: str, sites=()) -> Path:
        calls.append((float(np.nanmax(values)), title))
        return Path(out)

    monkeypatch.setattr(pipelines.plots, "rain_map", fake)
    return calls


def plot(archive: Path, tmp_path: Path, *time: str):
    args = ["plot", "map", "--store", str(archive), "--out", str(tmp_path / "f.png")]
    return CliRunner().invoke(app, [*args, *(["--time", *time] if time else [])])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.parametrize("text", ["yesterday", "now", "2026-13-01", "12"])
def test_a_time_that_does_not_parse_is_one_line_and_exit_2(archive, tmp_path, plotted, text):
    line = one_error_line(plot(archive, tmp_path, text))
    assert f"--time {text!r} is not a time" in line and "2026-06-01T12:00" in line  # an example
    assert plotted == []


@pytest.mark.parametrize("text", ["1999-01-01", "2026-06-01T11:54", "2026-06-01T12:36"])
def test_a_time_outside_the_range_plots_nothing_and_says_the_range(
    archive, tmp_path, plotted, text
):
    line = one_error_line(plot(archive, tmp_path, text))
    assert "outside the archive's range: 2026-06-01 12:00 to 2026-06-01 12:30 UTC" in line
    assert plotted == [] and not (tmp_path / "f.png").exists()


@pytest.mark.parametrize(
    ("text", "value", "shown"),
    [
        ("2026-06-01T12:15", 2, "12:10"),  # in the gap: 5 min to 12:10, 10 to 12:25
        ("2026-06-01T12:19", 5, "12:25"),
        ("2026-06-01T11:56", 0, "12:00"),  # within one step before the first frame
        ("2026-06-01T12:34:30", 6, "12:30"),  # within one step after the last
        ("2026-06-01T14:15+02:00", 2, "12:10"),  # an offset is converted to UTC
    ],
)
def test_a_time_between_frames_plots_the_nearest_and_warns(
    archive, tmp_path, plotted, text, value, shown
):
    result = plot(archive, tmp_path, text)  # the verb sets up logging: a WARNING line
    assert result.exit_code == 0, result.output
    assert plotted == [(value, f"d  2026-06-01 {shown} UTC  observed")]
    warnings = [line for line in result.output.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"plotting the nearest one, 2026-06-01 {shown}" in warnings[0]


def test_an_exact_time_and_last_plot_without_a_warning(archive, tmp_path, plotted):
    exact = plot(archive, tmp_path, "2026-06-01 12:25")
    last = plot(archive, tmp_path)
    assert exact.exit_code == 0 and last.exit_code == 0, exact.output + last.output
    assert [v for v, _ in plotted] == [5, 6]
    assert "WARNING" not in exact.output + last.output


def test_plot_writes_the_png_and_prints_its_path(archive, tmp_path):
    result = plot(archive, tmp_path, "2026-06-01T12:05")
    assert result.exit_code == 0, result.output
    png = tmp_path / "f.png"
    assert result.stdout.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def regular_axis(present: list[bool]) -> xr.Dataset:
    """A regular 5-minute axis from T0, absent slots NaN, as the archive lays it out."""
    n = len(present)
    precip = np.stack(
        [np.full((2, 2), i if p else np.nan, np.float32) for i, p in enumerate(present)]
    )
    return xr.Dataset(
        {"precip": (("time", "y", "x"), precip), "present": (("time",), np.array(present))},
        coords={"time": pd.date_range(T0, periods=n, freq="5min")},
        attrs={"time_step_minutes": 5},
    )


def test_only_present_frames_are_chosen_on_a_regular_axis():
    #          12:00  12:05  12:10 12:15 12:20  12:25  12:30  12:35  12:40
    ds = regular_axis([False, True, True, False, False, True, True, False, False])
    assert select_frame(ds, "last").index == 6  # not the absent slot 8
    at_gap = select_frame(ds, "2026-06-01T12:15")
    assert (at_gap.index, at_gap.exact) == (2, False)  # the slot exists but holds no frame
    assert select_frame(ds, "2026-06-01T12:20").index == 5
    assert select_frame(ds, "2026-06-01T12:35").index == 6  # one step after the last frame
    assert select_frame(ds, "2026-06-01T12:00").index == 1  # one step before the first
    with pytest.raises(FrameSelectError, match="12:05 to 2026-06-01 12:30 UTC"):
        select_frame(ds, "2026-06-01T12:40")  # on the axis, but two steps after the last frame
    with pytest.raises(FrameSelectError, match="no frames"):
        select_frame(regular_axis([False, False]), "last")
