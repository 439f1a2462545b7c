"""Nearest-neighbour resampling between grids (any CRS), with the index cached per grid pair,
and cuts of a grid as slices."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyproj

from pipelines.grid import Grid


@lru_cache(maxsize=32)
def _index(source: Grid, target: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Flat source index of every target cell, and whether it falls inside the source grid."""
    xx, yy = np.meshgrid(target.x, target.y)
    to_src = pyproj.Transformer.from_crs(target.crs, source.crs, always_xy=True)
    sx, sy = to_src.transform(xx, yy)
    col = np.floor((sx - source.x0) / source.dx)
    row = np.floor((source.y0 - sy) / source.dy)
    inside = (col >= 0) & (col < source.nx) & (row >= 0) & (row < source.ny)
    flat = np.where(inside, row * source.nx + col, 0).astype(np.int64)
    return flat.ravel(), inside.ravel()


def resample_nearest(values: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """``values`` on ``source`` seen on ``target``; NaN outside the source grid. A target that
    is a window of the source (itself, or a region cut from it) is a slice: cells as they are."""
    offset = target.offset_in(source)
    if offset is not None:
        r, c = offset
        if target.shape != source.shape:  # a cut (a view), else the reader's own array
            values = values[r : r + target.ny, c : c + target.nx]
        return np.asarray(values, dtype=np.float32)
    flat, inside = _index(source, target)
    out = np.where(inside, np.asarray(values, dtype=np.float32).ravel()[flat], np.nan)
    return out.reshape(target.shape).astype(np.float32)
