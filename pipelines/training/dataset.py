"""Training samples read lazily from the archive: each process opens the store itself and reads
the frames of the window it is asked for, with the window's motion prior.

Data-loader worker processes must be started with "spawn" or "forkserver" (``LOADER_CONTEXT``):
a process forked from one that has opened an Icechunk store can deadlock in its runtime.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import xarray as xr
from scipy.ndimage import uniform_filter

from pipelines.config import DataConfig, ObjectStorageConfig
from pipelines.nowcast.motion import motion_field
from pipelines.nowcast.transform import RainTransform
from pipelines.store.archive import open_archive
from pipelines.training.windows import Window

LOADER_CONTEXT = "spawn"
MIN_CROP_COVERAGE = 0.5  # a crop must have radar coverage over at least this share of its cells


class Sample(NamedTuple):
    """One window on the model scale: frames 0 .. T_in + T_out - 1 of one crop (or domain)."""

    frames: torch.Tensor  # (T, 1, h, w) float32, unknown cells 0
    seen: torch.Tensor  # (T, 1, h, w) bool, False where the value is unknown
    motion: torch.Tensor  # (2, h, w) float32 motion prior, cells per step, x first
    prior: torch.Tensor | None = None  # (T_out, 2, h, w) float32: the sprog model's prior at
    # each lead computed on the whole domain, and where it is known (1) (``WindowDataset``'s
    # ``prior``); an empty tensor when the dataset computes none


def prior_of(batch: Sample):
    """The ``motionrnn.sprog.Sprog`` prior of a batch (B, T_out, 2, h, w), or None."""
    from motionrnn.sprog import Sprog

    if batch.prior is None or batch.prior.numel() == 0:
        return None
    return Sprog(batch.prior[:, :, 0], batch.prior[:, :, 1] > 0)


def rotate_motion(motion: np.ndarray, quarter_turns: int, flip: bool) -> np.ndarray:
    """The motion of a field turned by ``np.rot90(k, axes=(-2, -1))`` then flipped left-right:
    the grid turns with it and so do the vectors ((u, v) -> (v, -u) per quarter turn)."""
    u, v = motion
    for _ in range(quarter_turns % 4):
        u, v = v, -u
    u, v = np.rot90(u, quarter_turns), np.rot90(v, quarter_turns)
    if flip:
        u, v = -u[:, ::-1], v[:, ::-1]
    return np.stack([u, v])


class _Recent:
    """The ``size`` most recently used values, by key (none with size 0)."""

    def __init__(self, size: int):
        self.size, self.values = size, OrderedDict()

    def get(self, key: Hashable) -> np.ndarray | None:
        """The value kept for ``key`` (now the most recent), or None."""
        if key not in self.values:
            return None
        self.values.move_to_end(key)
        return self.values[key]

    def put(self, key: Hashable, value: np.ndarray) -> None:
        if self.size:
            self.values[key] = value
            if len(self.values) > self.size:
                self.values.popitem(last=False)


class WindowDataset(torch.utils.data.Dataset):
    """Item i: a ``Sample`` of window i.

    With ``augment`` the crop position, a 90-degree turn and a flip are drawn from (seed, epoch,
    i): reproducible, and different every epoch (``set_epoch``). Crops keep to covered cells and
    are drawn where the rain is (weights: the wet share of the crop in the last input frame, plus
    ``wet_floor``). Without ``augment`` the crop is centred on the coverage; with
    ``whole_domain_multiple`` the sample is the whole domain cut to that multiple.
    The motion prior is computed on the whole domain (as a forecast would) and kept for the
    ``motion_cache`` most recent windows of this process; the ``frame_cache`` most recent
    decoded frames are kept too (a window shares all but one frame with its neighbour: reading
    them was a third of a training step). With ``prior`` (a frozen ``motionrnn.prior.SprogPrior``)
    the sprog model's prior is computed on the whole domain too, then cut and turned like the
    frames, so that a crop's long leads keep the rain advected into it from outside; it is kept
    for the ``prior_cache`` most recent windows.
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
        prior: torch.nn.Module | None = None,
    ):
        self.store, self.windows, self.cfg, self.augment = str(store), windows, cfg, augment
        self.snapshot = snapshot
        self.storage = storage
        self.whole = whole_domain_multiple
        self.prior = prior
        if self.whole is not None and augment:
            raise ValueError("whole-domain samples are not augmented")
        self.transform = RainTransform(cfg.transform)
        self.epoch = 0
        self._open: dict[str, xr.Dataset] = {}  # per process: opened on first use
        self._coverage: dict[str, np.ndarray] = {}
        self._motion = _Recent(cfg.motion_cache)  # (domain, start) -> float16 motion
        self._frames = _Recent(cfg.frame_cache)  # (domain, time index) -> mm/h
        self._priors = _Recent(cfg.prior_cache)  # (domain, start) -> (T_out, 2, Y, X) float16

    def __getstate__(self) -> dict:
        """Workers get the recipe, not open stores: each opens its own on first use."""
        return {
            **self.__dict__,
            "_open": {},
            "_coverage": {},
            "_motion": _Recent(self.cfg.motion_cache),
            "_frames": _Recent(self.cfg.frame_cache),
            "_priors": _Recent(self.cfg.prior_cache),
        }

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.windows)

    def _dataset(self, name: str) -> xr.Dataset:
        if name not in self._open:
            self._open[name] = open_archive(self.store, name, self.snapshot, self.storage)
        return self._open[name]

    def _covered_share(self, name: str, seen: np.ndarray) -> np.ndarray:
        """Share of covered cells in the crop whose top-left corner is each cell (per domain)."""
        if name not in self._coverage:
            c = self.cfg.crop
            if seen.shape[0] < c or seen.shape[1] < c:
                raise ValueError(
                    f"domain {name} ({seen.shape[0]} x {seen.shape[1]}) is smaller "
                    f"than the crop {c}"
                )
            self._coverage[name] = _crop_share(seen.astype(np.float32), c)
        return self._coverage[name]

    def _motion_prior(self, w: Window, frames: np.ndarray) -> np.ndarray:
        key = (w.domain, w.start)
        motion = self._motion.get(key)
        if motion is None:
            motion = motion_field(frames, self.cfg.transform).astype(np.float16)
            self._motion.put(key, motion)
        return motion.astype(np.float32)

    def _prior(self, w: Window, rates: np.ndarray, motion: np.ndarray) -> np.ndarray:
        """(T_out, 2, Y, X) float32: the prior of the window's input frames (mm/h, NaN
        unknown) on the whole domain and where it is known; kept for the last windows."""
        key = (w.domain, w.start)
        prior = self._priors.get(key)
        if prior is None:
            scaled = self.transform.forward(rates)
            with torch.no_grad():
                out = self.prior(
                    torch.from_numpy(np.nan_to_num(scaled, nan=0.0))[None],
                    torch.from_numpy(np.isfinite(scaled))[None],
                    torch.from_numpy(motion)[None],
                    self.cfg.frames_out,
                )
            prior = torch.stack([out.frames[0], out.known[0].float()], dim=1).numpy()
            prior = prior.astype(np.float16)
            self._priors.put(key, prior)
        return prior.astype(np.float32)

    def _rates(self, w: Window, length: int) -> np.ndarray:
        """(length, Y, X) mm/h of the window's frames; those not kept are read in one slice."""
        indices = range(w.start, w.start + length)
        found = {t: self._frames.get((w.domain, t)) for t in indices}
        missing = [t for t, frame in found.items() if frame is None]
        if missing:
            block = self._dataset(w.domain).precip.isel(time=slice(missing[0], missing[-1] + 1))
            for t, frame in enumerate(block.values, start=missing[0]):
                if found[t] is None:
                    found[t] = frame
                    self._frames.put((w.domain, t), frame)
        return np.stack([found[t] for t in indices])

    def _crop(self, w: Window, last: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of the crop: covered, drawn where the rain is (centred without
        augmentation)."""
        c = self.cfg.crop
        covered = self._covered_share(w.domain, np.isfinite(last))
        ok = covered >= MIN_CROP_COVERAGE
        if not ok.any():
            return (last.shape[0] - c) // 2, (last.shape[1] - c) // 2
        origins = np.argwhere(ok)
        if not self.augment:
            return tuple(origins[len(origins) // 2])
        wet = _crop_share((np.nan_to_num(last) >= self.cfg.transform.threshold_mm_h), c)
        weights = wet[ok] + self.cfg.wet_floor
        return tuple(origins[rng.choice(len(origins), p=weights / weights.sum())])

    def __getitem__(self, i: int) -> Sample:
        w = self.windows[i]
        n_in = self.cfg.frames_in
        length = n_in + self.cfg.frames_out
        rng = np.random.default_rng([self.cfg.seed, self.epoch, i])
        rates = self._rates(w, length)  # (T, Y, X) mm/h
        motion = self._motion_prior(w, rates[:n_in])
        if self.whole is not None:
            (y0, x0), (hy, hx) = _centred(rates.shape[1], rates.shape[2], self.whole)
        else:
            y0, x0 = self._crop(w, rates[n_in - 1], rng)
            hy = hx = self.cfg.crop
        region = (slice(y0, y0 + hy), slice(x0, x0 + hx))
        prior = np.zeros(0, dtype=np.float32)
        if self.prior is not None:
            prior = self._prior(w, rates[:n_in], motion)[(slice(None), slice(None), *region)]
        scaled = self.transform.forward(rates[(slice(None), *region)])
        motion = motion[(slice(None), *region)]
        if self.augment:
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            scaled = np.rot90(scaled, k=turns, axes=(-2, -1))
            if prior.size:
                prior = np.rot90(prior, k=turns, axes=(-2, -1))
            if flip:
                scaled, prior = scaled[..., ::-1], prior[..., ::-1] if prior.size else prior
            motion = rotate_motion(motion, turns, flip)
        seen = np.isfinite(scaled)
        return Sample(
            torch.from_numpy(np.ascontiguousarray(np.nan_to_num(scaled, nan=0.0)))[:, None],
            torch.from_numpy(np.ascontiguousarray(seen))[:, None],
            torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(prior)),
        )


def _crop_share(mask: np.ndarray, c: int) -> np.ndarray:
    """Share of True cells in the c x c crop whose top-left corner is each possible cell."""
    share = uniform_filter(mask.astype(np.float32), size=c, mode="constant", origin=-(c // 2))
    return share[: mask.shape[0] - c + 1, : mask.shape[1] - c + 1]


def _centred(ny: int, nx: int, multiple: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Origin and size of the centred region of a (ny, nx) grid cut to a multiple."""
    hy, hx = ny // multiple * multiple, nx // multiple * multiple
    return ((ny - hy) // 2, (nx - hx) // 2), (hy, hx)
