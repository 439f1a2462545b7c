"""Maps of rain-rate fields (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402

# rain-rate classes (mm/h) and colours in the usual radar style
RAIN_LEVELS = [0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 200]
RAIN_COLOURS = [
    "#c6dbef",
    "#6baed6",
    "#2171b5",
    "#41ab5d",
    "#fee825",
    "#fd8d3c",
    "#e31a1c",
    "#bd0026",
    "#7a0177",
]


def plot_rain_map(field: xr.DataArray, out: Path | BinaryIO, title: str) -> Path | BinaryIO:
    """Save a map of one precip(y, x) field in mm/h as PNG, to a path or a binary file;
    grey where no radar sees."""
    cmap = ListedColormap(RAIN_COLOURS)
    cmap.set_under("white")
    cmap.set_bad("#d9d9d9")
    norm = BoundaryNorm(RAIN_LEVELS, cmap.N)
    x_km, y_km = field["x"].values / 1000.0, field["y"].values / 1000.0
    values = np.ma.masked_invalid(field.values)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=110)
    mesh = ax.pcolormesh(x_km, y_km, values, cmap=cmap, norm=norm, shading="nearest")
    fig.colorbar(mesh, ax=ax, extend="both", label="rain rate (mm/h)", ticks=RAIN_LEVELS)
    ax.set_aspect("equal")
    ax.set_xlabel("x (km)")
    ax.set_ylabel("y (km)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    if isinstance(out, str | Path):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
