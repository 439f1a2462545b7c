"""Training windows: runs of frames_in + frames_out consecutive frames, split by time blocks.

Time is cut into blocks of ``block_hours`` on a fixed grid (from the Unix epoch); each block goes
to train, validation or test by a draw that depends only on the block's start time and the seed
(a hash, cut in the configured shares), so adding data never moves a block to another split and
a retrained model is never tested on what it trained on. Or the split is by event (``events``:
a domain's frames of one UTC day, named 'domain@YYYY-MM-DD' or by its domain alone): what a
benchmark needs to score on radars and storms never trained on. A window belongs to the split
of the slot its first frame is in, and is kept only if its frames and the ``gap_windows``
window lengths after it lie in slots of that split: windows of different splits share no frame
and lie at least that gap apart (radar fields stay correlated for an hour or more).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.config import DataConfig
from pipelines.store.timeaxis import complete_starts

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


def block_of(times: pd.DatetimeIndex, hours: float) -> np.ndarray:
    """Block number of each time: blocks of ``hours`` counted from the Unix epoch."""
    seconds = (times - pd.Timestamp("1970-01-01")).total_seconds().to_numpy()
    return np.floor(seconds / (hours * 3600.0)).astype(np.int64)


def block_split(block: int, hours: float, shares: tuple[float, float, float], seed: int) -> str:
    """The split of the block that starts at ``block * hours`` after the Unix epoch: a hash of
    its start time (whole seconds) and the seed, uniform in [0, 1), cut in the shares."""
    start = round(block * hours * 3600.0)
    digest = hashlib.sha256(f"motioncast-split:{seed}:{start}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    edges = np.cumsum(shares) / sum(shares)
    return SPLITS[min(int(np.searchsorted(edges, u, side="right")), len(SPLITS) - 1)]


def event_split(domain: str, day: pd.Timestamp, events: dict[str, str]) -> str:
    """The split of a domain's event (its frames of one UTC day) in ``events``: by
    'domain@YYYY-MM-DD', else by 'domain', else train."""
    return events.get(f"{domain}@{day:%Y-%m-%d}", events.get(domain, "train"))


def slot_splits(domain: str, times: pd.DatetimeIndex, cfg: DataConfig) -> list[str]:
    """The split of each time slot: by event when ``cfg.events`` names any, else by the hash
    of its time block."""
    if cfg.events:
        days = times.normalize()
        names = {d: event_split(domain, d, cfg.events) for d in set(days)}
        return [names[d] for d in days]
    blocks = block_of(times, cfg.block_hours).tolist()
    names = {b: block_split(b, cfg.block_hours, cfg.split, cfg.seed) for b in set(blocks)}
    return [names[b] for b in blocks]


def split_windows(
    domain: str, times: pd.DatetimeIndex, present: np.ndarray, wet: np.ndarray, cfg: DataConfig
) -> dict[str, list[Window]]:
    """The domain's complete windows (every slot present), by split; ``times`` is the regular
    axis of the archive's domain."""
    out: dict[str, list[Window]] = {name: [] for name in SPLITS}
    length = cfg.frames_in + cfg.frames_out
    starts = complete_starts(present, length)
    if len(starts) == 0:
        return out
    gap = round(cfg.gap_windows * length)
    step = times[1] - times[0]
    # the split of every slot a window or its gap may reach, past the axis' end too
    reach = pd.DatetimeIndex(times[0] + step * np.arange(len(times) + length + gap))
    codes = np.array([SPLITS.index(name) for name in slot_splits(domain, reach, cfg)])
    changes = np.concatenate([[0], np.cumsum(codes[1:] != codes[:-1])])
    starts = starts[changes[starts + length + gap - 1] == changes[starts]]
    wet_mean = np.convolve(np.nan_to_num(wet), np.ones(length) / length, mode="valid")
    for s in starts.tolist():
        out[SPLITS[codes[s]]].append(
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
