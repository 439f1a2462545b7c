"""Training samples read lazily from the archive: each process opens the store itself and reads
only the frames and the crop of the window it is asked for.

Data-loader worker processes must be started with "spawn" or "forkserver" (``LOADER_CONTEXT``):
a process forked from one that has opened an Icechunk store can deadlock in its runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr
from scipy.ndimage import uniform_filter

from pipelines.config import DataConfig, ObjectStorageConfig
from pipelines.store.archive import open_archive
from pipelines.training.transform import RainTransform
from pipelines.training.windows import Window

LOADER_CONTEXT = "spawn"
MIN_CROP_COVERAGE = 0.5  # a crop must have radar coverage over at least this share of its cells


class WindowDataset(torch.utils.data.Dataset):
    """Item i: (inputs (T_in, 1, c, c), targets (T_out, 1, c, c), seen (T_out, 1, c, c)).

    Values are on the model scale (``RainTransform``); unknown cells are 0 in the tensors and
    False in ``seen``. With ``augment`` the crop position, a 90-degree turn and a flip are drawn
    from (seed, epoch, i): reproducible, and different every epoch (``set_epoch``). Without it
    the crop is centred on the domain's coverage.
    """

    def __init__(
        self,
        store: str | Path,
        windows: list[Window],
        cfg: DataConfig,
        augment: bool = True,
        snapshot: str | None = None,
        whole_domain_multiple: int | None = None,
        storage: ObjectStorageConfig | None = None,
    ):
        self.store, self.windows, self.cfg, self.augment = str(store), windows, cfg, augment
        self.snapshot = snapshot
        self.storage = storage
        self.whole = whole_domain_multiple
        if self.whole is not None and augment:
            raise ValueError("whole-domain samples are not augmented")
        self.transform = RainTransform(cfg.transform)
        self.epoch = 0
        self._open: dict[str, xr.Dataset] = {}  # per process: opened on first use
        self._origins: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:
        """Workers get the recipe, not open stores: each opens its own on first use."""
        return {**self.__dict__, "_open": {}, "_origins": {}}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.windows)

    def _dataset(self, name: str) -> xr.Dataset:
        if name not in self._open:
            self._open[name] = open_archive(self.store, name, self.snapshot, self.storage)
        return self._open[name]

    def _crop_origins(self, name: str) -> np.ndarray:
        """Top-left corners of the crops that keep to covered cells (computed once per domain)."""
        if name not in self._origins:
            ds = self._dataset(name)
            c = self.cfg.crop
            if ds.sizes["y"] < c or ds.sizes["x"] < c:
                raise ValueError(
                    f"domain {name} ({ds.sizes['y']} x {ds.sizes['x']}) is smaller "
                    f"than the crop {c}"
                )
            seen = np.isfinite(ds.precip.isel(time=0).values).astype(np.float32)
            # share of seen cells in the c x c crop whose top-left corner is each cell
            share = uniform_filter(seen, size=c, mode="constant", origin=-(c // 2))
            origins = np.argwhere(
                share[: seen.shape[0] - c + 1, : seen.shape[1] - c + 1] >= MIN_CROP_COVERAGE
            )
            if len(origins) == 0:
                origins = np.array([[(seen.shape[0] - c) // 2, (seen.shape[1] - c) // 2]])
            self._origins[name] = origins
        return self._origins[name]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w = self.windows[i]
        n_in = self.cfg.frames_in
        length = n_in + self.cfg.frames_out
        rng = np.random.default_rng([self.cfg.seed, self.epoch, i])
        ds = self._dataset(w.domain)
        if self.whole is not None:
            (y0, x0), (hy, hx) = _centred(ds.sizes["y"], ds.sizes["x"], self.whole)
        else:
            origins = self._crop_origins(w.domain)
            hy = hx = self.cfg.crop
            pick = rng.integers(len(origins)) if self.augment else len(origins) // 2
            y0, x0 = origins[pick]
        block = ds.precip.isel(
            time=slice(w.start, w.start + length), y=slice(y0, y0 + hy), x=slice(x0, x0 + hx)
        ).values  # (T, hy, hx) mm/h, only these chunks are read
        scaled = self.transform.forward(block)
        if self.augment:
            scaled = np.rot90(scaled, k=int(rng.integers(4)), axes=(1, 2))
            if rng.integers(2):
                scaled = scaled[:, :, ::-1]
        seen = np.isfinite(scaled)
        frames = torch.from_numpy(np.ascontiguousarray(np.nan_to_num(scaled, nan=0.0)))[:, None]
        mask = torch.from_numpy(np.ascontiguousarray(seen[n_in:]))[:, None]
        return frames[:n_in], frames[n_in:], mask


def _centred(ny: int, nx: int, multiple: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Origin and size of the centred region of a (ny, nx) grid cut to a multiple."""
    hy, hx = ny // multiple * multiple, nx // multiple * multiple
    return ((ny - hy) // 2, (nx - hx) // 2), (hy, hx)
