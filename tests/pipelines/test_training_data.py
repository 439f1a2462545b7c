"""Training data: the transform, complete windows, the block split and lazy samples."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.config import DataConfig, TransformConfig
from pipelines.frame import Frame
from pipelines.grid import Grid
from pipelines.nowcast.transform import RainTransform
from pipelines.store import Archive, open_archive
from pipelines.store.timeaxis import complete_starts
from pipelines.training.dataset import LOADER_CONTEXT, WindowDataset
from pipelines.training.windows import SPLITS, split_windows


def test_transform_round_trips_rates_above_threshold():
    t = RainTransform(TransformConfig())
    rates = np.array([0.0, 0.05, 0.1, 0.37, 1.0, 12.5, 99.0, 200.0, np.nan], dtype=np.float32)
    x = t.forward(rates)
    assert x[0] == 0.0 and x[1] == 0.0  # no rain -> zerovalue -> 0
    assert x[7] == pytest.approx(1.0, abs=1e-3)  # 200 mm/h = 23.01 dB -> 1
    assert np.all(np.diff(x[1:8]) > 0) and np.isnan(x[8])
    back = t.inverse(x)
    np.testing.assert_allclose(back[2:8], rates[2:8], rtol=1e-5)
    assert back[0] == 0.0 and back[1] == 0.0  # below the threshold: 0, as pysteps
    with pytest.raises(ValueError):
        RainTransform(TransformConfig(zerovalue_db=-5.0))  # above 10 log10(0.1) = -10 dB


def test_complete_starts_skip_windows_with_a_missing_frame():
    present = np.ones(12, dtype=bool)
    present[7] = False  # 12:35 missing on the regular axis 12:00 .. 12:55
    starts = complete_starts(present, 4)
    assert starts.tolist() == [0, 1, 2, 3, 8]  # the 4 frames from index 8 on: 12:40 .. 12:55


def test_split_keeps_a_gap_between_splits_and_is_reproducible():
    times = pd.date_range("2026-06-01", periods=12 * 24 * 6, freq="5min")  # 6 days
    wet = np.linspace(0, 0.4, len(times))
    cfg = DataConfig(block_hours=6.0, seed=3)
    present = np.ones(len(times), dtype=bool)
    split = split_windows("d", times, present, wet, cfg)
    assert split == split_windows("d", times, present, wet, cfg)
    assert split != split_windows("d", times, present, wet, DataConfig(block_hours=6.0, seed=4))
    length = cfg.frames_in + cfg.frames_out
    owner = np.full(len(times) + length, -1)
    for code, name in enumerate(SPLITS):
        for w in split[name]:
            assert (owner[w.start : w.start + length] == -1).all() or set(
                owner[w.start : w.start + length]
            ) <= {-1, code}  # no frame shared with another split
            owner[w.start : w.start + length] = code
    used = np.flatnonzero(owner >= 0)
    for a, b in zip(used[:-1], used[1:], strict=True):
        if owner[a] != owner[b]:
            assert b - a > length  # a gap of at least one window between splits
    counts = {name: len(split[name]) for name in SPLITS}
    assert counts["train"] > counts["validation"] > 0 and counts["test"] > 0
    heavy = max(split["train"], key=lambda w: w.weight)
    assert heavy.weight == pytest.approx(wet[heavy.start : heavy.start + length].mean() + 0.02)


def test_appending_data_never_moves_a_window_to_another_split():
    """The split depends on each block's start time and the seed only: a longer archive keeps
    every window of a shorter one in its split (it only adds windows)."""
    times = pd.date_range("2026-06-01", periods=12 * 24 * 8, freq="5min")
    cfg = DataConfig(block_hours=3.0, seed=5)
    present = np.ones(len(times), dtype=bool)
    wet = np.full(len(times), 0.1)
    longer = split_windows("d", times, present, wet, cfg)
    where = {w.start: name for name in SPLITS for w in longer[name]}
    for days in (2, 5, 7):
        n = 12 * 24 * days
        shorter = split_windows("d", times[:n], present[:n], wet[:n], cfg)
        assert all(where[w.start] == name for name in SPLITS for w in shorter[name])
        assert sum(map(len, shorter.values())) > 0


@pytest.fixture
def small_archive(tmp_path: Path) -> Path:
    grid = Grid.from_extent("EPSG:3035", (0, 0, 60e3, 50e3), 1000.0)  # 50 x 60
    t0 = pd.Timestamp("2026-06-01T12:00")
    frames = []
    for k in range(20):
        precip = np.full(grid.shape, 0.5 + k, dtype=np.float32)
        precip[:, :5] = np.nan  # a strip no radar sees
        frames.append(
            Frame("d", t0 + pd.Timedelta(minutes=5 * k), grid, precip, f"f{k}", f"s{k}", "test")
        )
    Archive(tmp_path / "a", create=True).write(frames, "test")
    return tmp_path / "a"


def test_samples_hold_the_right_frames_and_crop(small_archive: Path):
    cfg = DataConfig(frames_in=3, frames_out=4, crop=32)
    ds = open_archive(small_archive)
    windows = split_windows(
        "d", pd.DatetimeIndex(ds.time.values), ds.present.values, ds.wet_fraction.values, cfg
    )
    every = [w for name in SPLITS for w in windows[name]]
    data = WindowDataset(small_archive, every, cfg, augment=True)
    t = RainTransform(cfg.transform)
    w = every[5]
    sample = data[5]
    inputs, seen = sample.frames[:3], sample.seen
    assert sample.frames.shape == (7, 1, 32, 32) and sample.motion.shape == (2, 32, 32)
    assert inputs.dtype == torch.float32 and seen.dtype == torch.bool
    for k in range(3):  # frame k of the window is constant 0.5 + (start + k) where seen
        values = inputs[k, 0][inputs[k, 0] > 0]
        assert torch.allclose(values, torch.tensor(t.forward(np.float32(0.5 + w.start + k))))
    assert seen.float().mean() >= 0.5  # crops keep to covered cells
    again = data[5]
    assert all(torch.equal(a, b) for a, b in zip(again, data[5], strict=True))
    data.set_epoch(1)
    other = [data[i].frames for i in range(len(data))]
    data.set_epoch(0)
    assert any(not torch.equal(a, data[i].frames) for i, a in enumerate(other))  # new draws
    loader = torch.utils.data.DataLoader(
        data, batch_size=4, num_workers=2, multiprocessing_context=LOADER_CONTEXT
    )
    batch = next(iter(loader))  # worker processes open the store themselves
    assert batch.frames.shape == (4, 7, 1, 32, 32) and batch.motion.shape == (4, 2, 32, 32)


@pytest.mark.parametrize("kept", [0, 3, 64])
def test_kept_frames_give_the_samples_read_afresh(small_archive: Path, kept: int):
    """A frame cache smaller than a window (3 < 7 frames), larger than the archive, or none:
    every window's frames are the archive's, in any order of reading."""
    cfg = DataConfig(frames_in=3, frames_out=4, crop=32, frame_cache=kept)
    ds = open_archive(small_archive)
    windows = split_windows(
        "d", pd.DatetimeIndex(ds.time.values), ds.present.values, ds.wet_fraction.values, cfg
    )
    every = [w for name in SPLITS for w in windows[name]]
    data = WindowDataset(small_archive, every, cfg, augment=False, whole_domain_multiple=2)
    t = RainTransform(cfg.transform)
    for i in [5, 6, 4, 9, 0, 5, 13, 12]:
        w, frames = every[i], data[i].frames[:, 0]
        expected = t.forward(0.5 + np.arange(w.start, w.start + 7, dtype=np.float32))
        assert np.allclose(frames[:, 10, 10].numpy(), expected)
    assert len(data._frames.values) == min(kept, 20)


def test_whole_domain_samples_for_validation(small_archive: Path):
    cfg = DataConfig(frames_in=3, frames_out=4, crop=32)
    ds = open_archive(small_archive)
    windows = split_windows(
        "d", pd.DatetimeIndex(ds.time.values), ds.present.values, ds.wet_fraction.values, cfg
    )
    every = [w for name in SPLITS for w in windows[name]]
    data = WindowDataset(small_archive, every, cfg, augment=False, whole_domain_multiple=8)
    sample = data[0]
    seen = sample.seen
    assert sample.frames.shape == (7, 1, 48, 56)  # 50 x 60 cut
    assert not seen[0, 0, :, :3].any() and seen[0, 0, :, 3].all()  # columns 2.. of 60 kept
    with pytest.raises(ValueError, match="not augmented"):
        WindowDataset(small_archive, every, cfg, augment=True, whole_domain_multiple=8)


def test_validation_never_scores_dryness_advected_from_outside_coverage(small_archive: Path):
    """Columns 0-4 of the small archive are unknown. With rain moving 2 cells a step east,
    every baseline's value for a cell the rain reaches from that strip is unknown, and no
    method is scored there (the baselines used to see the strip as 0 mm/h and advect it in)."""
    from pipelines.config import TrainingConfig
    from pipelines.scoring.scores import Scores
    from pipelines.training.dataset import Sample
    from pipelines.training.validation import Validator

    cfg = TrainingConfig.model_validate(
        {"data": {"frames_in": 3, "frames_out": 4, "crop": 32}, "model": {"patch": 2}}
    )
    ds = open_archive(small_archive)
    windows = split_windows(
        "d", pd.DatetimeIndex(ds.time.values), ds.present.values, ds.wet_fraction.values, cfg.data
    )
    every = [w for name in SPLITS for w in windows[name]]
    data = WindowDataset(small_archive, every, cfg.data, augment=False, whole_domain_multiple=2)
    sample = data[0]
    motion = torch.zeros_like(sample.motion)
    motion[0] = 2.0  # 2 cells a step to the east
    sample = Sample(sample.frames, sample.seen, motion)
    assert not sample.seen[:, 0, :, :5].any()  # the strip (cut to 50 x 60: columns 0-4)
    validator = Validator(data, [0], cfg, batch_size=1)
    validator._baselines = {name: Scores(validator.spec) for name in validator.methods}
    validator._baseline_counts = {name: validator._counts() for name in validator.methods}
    validator._score_baselines(0, validator.rates(sample), sample.motion.numpy())
    cells = validator._cells[0]  # (leads, H, W)
    for k in range(4):
        reach = 5 + 2 * (k + 1)  # columns fed from the strip by lead k + 1
        assert not cells[k][:, :reach].any()
        assert cells[k][:, reach + 1 :].all()


def test_crops_carry_the_prior_computed_on_the_whole_domain(tmp_path: Path):
    """A crop's prior is the whole domain's, cut and turned like its frames: rain advected
    into the crop from outside it is known there (on a crop of its own it would be unknown)."""
    from motionrnn.prior import SprogPrior

    grid = Grid.from_extent("EPSG:3035", (0, 0, 64e3, 48e3), 1000.0)  # 48 x 64
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    t0 = pd.Timestamp("2026-06-01T12:00")
    frames = []
    for k in range(10):  # rain bands moving 2 cells a step east
        precip = 3.0 + 2.5 * np.sin((xx - 2 * k) / 5.0) + np.cos(yy / 7.0) + xx * yy / 1000
        frames.append(
            Frame(
                "d",
                t0 + pd.Timedelta(minutes=5 * k),
                grid,
                precip.astype(np.float32),
                f"f{k}",
                f"s{k}",
                "test",
            )
        )
    Archive(tmp_path / "a", create=True).write(frames, "test")
    cfg = DataConfig(frames_in=3, frames_out=4, crop=32, split=(1, 0, 0))
    ds = open_archive(tmp_path / "a")
    windows = split_windows(
        "d", pd.DatetimeIndex(ds.time.values), ds.present.values, ds.wet_fraction.values, cfg
    )["train"]
    prior = SprogPrior(4, 6, 5 / 38, 25 / 38, 2 / 38).eval()
    cropped = WindowDataset(tmp_path / "a", windows, cfg, augment=True, prior=prior)
    whole = WindowDataset(tmp_path / "a", windows, cfg, augment=False, whole_domain_multiple=1)
    sample, full = cropped[2], whole[2]
    assert sample.prior.shape == (4, 2, 32, 32)
    with torch.no_grad():
        expected = prior(full.frames[None, :3, 0], full.seen[None, :3, 0], full.motion[None], 4)
    # find the crop (and its turn) in the whole domain by its last input frame
    views = [(turns, flip) for turns in range(4) for flip in (False, True)]

    def view(a: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
        a = torch.rot90(a, turns, dims=(-2, -1))
        return torch.flip(a, dims=(-1,)) if flip else a

    found = [
        (turns, flip, y, x)
        for turns, flip in views
        for y in range(view(full.frames[2, 0], turns, flip).shape[0] - 31)
        for x in range(view(full.frames[2, 0], turns, flip).shape[1] - 31)
        if torch.equal(
            view(full.frames[2, 0], turns, flip)[y : y + 32, x : x + 32], sample.frames[2, 0]
        )
    ]
    assert len(found) == 1
    turns, flip, y, x = found[0]
    torch.testing.assert_close(  # to float16's rounding: the dataset keeps priors so
        sample.prior[:, 0],
        view(expected.frames[0], turns, flip)[:, y : y + 32, x : x + 32],
        atol=1e-3,
        rtol=1e-3,
    )
    assert sample.prior[:, 1].mean() > 0.95  # known almost everywhere: nothing cut off
