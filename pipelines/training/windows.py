"""Training windows: runs of frames_in + frames_out consecutive frames, split by time blocks.

Time is cut into blocks of ``block_hours`` on a fixed grid (from the Unix epoch); each block goes
to train, validation or test by a seeded draw in the configured shares. A window belongs to the
block its first frame is in and must end in it too: no window crosses a block boundary, so the
splits share no frame and no two windows of different splits overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.config import DataConfig

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Window:
    domain: str
    start: int  # index of the first frame in the domain's (regular) time axis
    time: pd.Timestamp  # time of the first frame
    weight: float  # sampling weight: mean wet share + floor

    def to_json(self) -> list:
        return [self.domain, self.start, self.time.isoformat(), self.weight]

    @classmethod
    def from_json(cls, item: list) -> Window:
        domain, start, time, weight = item
        return cls(domain, int(start), pd.Timestamp(time), float(weight))


def complete_starts(present: np.ndarray, length: int) -> np.ndarray:
    """Start indices of runs of ``length`` present slots on a regular time axis."""
    if len(present) < length:
        return np.array([], dtype=np.int64)
    counts = np.convolve(present.astype(np.int64), np.ones(length, dtype=np.int64), mode="valid")
    return np.flatnonzero(counts == length)


def block_of(times: pd.DatetimeIndex, hours: float) -> np.ndarray:
    """Block number of each time: blocks of ``hours`` counted from the Unix epoch."""
    seconds = (times - pd.Timestamp("1970-01-01")).total_seconds().to_numpy()
    return np.floor(seconds / (hours * 3600.0)).astype(np.int64)


def assign_blocks(
    blocks: np.ndarray, shares: tuple[float, float, float], seed: int
) -> dict[int, str]:
    """A split name for each distinct block: a seeded shuffle cut in the given shares."""
    unique = np.unique(blocks)
    order = np.random.default_rng(seed).permutation(len(unique))
    total = sum(shares)
    cuts = np.round(np.cumsum(shares)[:-1] / total * len(unique)).astype(int)
    names = np.empty(len(unique), dtype=object)
    for name, idx in zip(SPLITS, np.split(order, cuts), strict=True):
        names[idx] = name
    return dict(zip(unique.tolist(), names.tolist(), strict=True))


def split_windows(
    domain: str, times: pd.DatetimeIndex, present: np.ndarray, wet: np.ndarray, cfg: DataConfig
) -> dict[str, list[Window]]:
    """The domain's complete windows (every slot present), by split; ``times`` is the regular
    axis of the archive's domain."""
    length = cfg.frames_in + cfg.frames_out
    starts = complete_starts(present, length)
    blocks = block_of(times, cfg.block_hours)
    same_block = blocks[starts] == blocks[starts + length - 1] if len(starts) else starts
    starts = starts[same_block.astype(bool)] if len(starts) else starts
    names = assign_blocks(blocks, cfg.split, cfg.seed)
    wet_mean = np.convolve(np.nan_to_num(wet), np.ones(length) / length, mode="valid")
    out: dict[str, list[Window]] = {name: [] for name in SPLITS}
    for s in starts.tolist():
        out[names[int(blocks[s])]].append(
            Window(domain, s, times[s], float(wet_mean[s]) + cfg.wet_floor)
        )
    return out


def split_metadata(windows: dict[str, list[Window]], hours: float) -> dict[str, list[str]]:
    """The time blocks of each split, as ISO intervals, for the run's metadata."""
    out: dict[str, list[str]] = {}
    for name, items in windows.items():
        blocks = sorted(
            {(w.domain, int(block_of(pd.DatetimeIndex([w.time]), hours)[0])) for w in items}
        )
        out[name] = [
            f"{d} {pd.Timestamp(b * hours * 3600, unit='s'):%Y-%m-%dT%H:%M}/"
            f"{pd.Timestamp((b + 1) * hours * 3600, unit='s'):%Y-%m-%dT%H:%M}"
            for d, b in blocks
        ]
    return out
