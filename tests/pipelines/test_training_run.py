"""Training: schedules, sampler, scores and baselines; then real Ray Train runs with 2 CPU
workers (slow): end to end into the registry, a killed worker, a continued run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from pipelines import baselines
from pipelines.config import OptimiserConfig, SamplingConfig, load_config
from pipelines.registry import Registry
from pipelines.scores import ScoreSums
from pipelines.store import Archive
from pipelines.training.sampler import WeightedWindowSampler
from pipelines.training.schedule import lr_factor, progress, teacher_probabilities
from tests.conftest import SMALL_TRAINING


def test_progress_is_the_first_budget_spent():
    assert progress(50, 10.0, 100, None) == 0.5
    assert progress(50, 90.0, 100, 2.0) == 0.75  # 90 s of 2 minutes
    assert progress(100, 1.0, 100, 2.0) == 1.0


def test_lr_warms_up_then_decays_to_the_floor():
    cfg = OptimiserConfig(warmup_fraction=0.1, min_lr_fraction=0.05)
    assert lr_factor(0.0, cfg) < 0.02
    assert lr_factor(0.1, cfg) == pytest.approx(1.0)
    assert lr_factor(0.55, cfg) == pytest.approx(0.525)  # half way down the cosine
    assert lr_factor(1.0, cfg) == pytest.approx(0.05)


def test_teacher_forcing_follows_the_budget():
    reverse = SamplingConfig(method="reverse", start=0.25, end=0.5)
    assert teacher_probabilities(0.1, reverse) == (0.5, 0.5)
    mid = teacher_probabilities(0.375, reverse)
    assert 0.5 < mid.observed < 1.0 and mid.forecast == pytest.approx(0.25)
    assert teacher_probabilities(0.6, reverse) == (1.0, 0.0)
    scheduled = SamplingConfig(method="scheduled", end=0.5)
    assert teacher_probabilities(0.25, scheduled) == pytest.approx((1.0, 0.5))
    assert teacher_probabilities(0.3, SamplingConfig(method="none")) is None


def test_sampler_draws_by_weight_per_rank_and_epoch():
    weights = [0.02, 0.02, 1.0, 0.5]
    a = WeightedWindowSampler(weights, 4000, seed=1, rank=0)
    draws = np.bincount(list(a), minlength=4) / 4000
    np.testing.assert_allclose(draws, np.array(weights) / sum(weights), atol=0.03)
    b = WeightedWindowSampler(weights, 4000, seed=1, rank=1)
    assert list(a) == list(a) and list(a) != list(b)
    before = list(a)
    a.set_epoch(1)
    assert list(a) != before


def test_scores_pool_contingency_tables_and_errors():
    s = ScoreSums(leads=2, thresholds=(1.0,))
    obs = np.array([[[0.0, 2.0], [3.0, 0.5]], [[0.0, 2.0], [3.0, 0.5]]])
    fc = np.array([[[1.5, 2.0], [0.0, 0.5]], [[0.0, 2.0], [3.0, 0.5]]])
    mask = np.ones_like(obs, dtype=bool)
    mask[0, 1, 1] = False  # one cell not scored at lead 1
    s.add(fc, obs, mask)
    out = s.summary()
    # lead 1: hit (2,2), miss (3 vs 0), false alarm (1.5 vs 0): 1/3; lead 2: 2 hits: 1
    assert out["per_lead"]["csi_1mm"] == [pytest.approx(1 / 3), 1.0]
    assert out["csi_1mm"] == pytest.approx(3 / 5)
    assert out["per_lead"]["mae"] == [pytest.approx(4.5 / 3), 0.0]
    assert out["mae"] == pytest.approx(4.5 / 7)
    summed = s.from_vector(s.vector() * 2).summary()
    assert summed["csi_1mm"] == out["csi_1mm"] and summed["mae"] == out["mae"]


def test_extrapolation_moves_rain_with_the_flow_and_persistence_does_not():
    y, x = np.mgrid[0:64, 0:64]
    frames = np.stack(
        [np.where((x - 12 - 2 * t) ** 2 + (y - 32) ** 2 < 64, 5.0, 0.0) for t in range(6)]
    ).astype(np.float32)  # a disc moving 2 cells a step to the east, centre at 22 last
    forecast = baselines.get_method("extrapolation")(frames, 5)
    centre = (np.nan_to_num(forecast[4]) * x).sum() / np.nan_to_num(forecast[4]).sum()
    assert centre == pytest.approx(32.0, abs=1.5)  # 5 more steps of 2 cells
    still = baselines.get_method("persistence")(frames, 3)
    assert still.shape == (3, 64, 64) and np.array_equal(still[2], frames[-1])
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.get_method("steps")


# ---- real Ray Train runs -------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_train_checkpoint_register_and_continue(ray_local, truth_archive, tmp_path):
    from pipelines.training.run import train

    cfg = load_config(
        None, [*SMALL_TRAINING, "training.max_steps=20", f"training.scaling.storage={tmp_path}"]
    )
    result = train(truth_archive, tmp_path / "registry", cfg, run_name="e2e")
    state = result.state
    assert state.step == 20 and state.epoch == 4
    assert [h["step"] for h in state.history] == [0, 5, 10, 15, 20]
    assert state.history[-1]["val_loss"] < 0.8 * state.history[0]["val_loss"]  # it learns
    assert sorted((tmp_path / "e2e").glob("checkpoint_step*"))  # checkpoints on storage
    card = Registry(tmp_path / "registry").get("v0001").card
    assert set(card["validation"]) == {"model", "extrapolation", "persistence"}
    for scores in card["validation"].values():
        assert 0.0 <= scores["csi_1mm"] <= 1.0 and len(scores["per_lead"]["mae"]) == 4
    assert card["data"]["snapshot"] == Archive(truth_archive).head()
    assert card["data"]["windows"]["validation"] > 0 and card["data"]["splits"]["train"]
    # a driver restarted with the same run name continues it (here with a larger budget)
    more = load_config(
        None, [*SMALL_TRAINING, "training.max_steps=30", f"training.scaling.storage={tmp_path}"]
    )
    again = train(truth_archive, tmp_path / "registry", more, run_name="e2e")
    assert again.state.step == 30 and [h["step"] for h in again.state.history][:5] == [
        0,
        5,
        10,
        15,
        20,
    ]
    assert again.version.version == "v0002"
    # fine-tuning starts from the given weights: its first validation is v0002's last
    tune = load_config(
        None,
        [
            *SMALL_TRAINING,
            "training.max_steps=5",
            f"training.scaling.storage={tmp_path}",
            f"training.init_checkpoint={again.version.checkpoint}",
        ],
    )
    tuned = train(truth_archive, tmp_path / "registry", tune, run_name="tune")
    first, last = tuned.state.history[0]["val_loss"], again.state.history[-1]["val_loss"]
    assert first == pytest.approx(last, rel=1e-5)
    assert tuned.version.card["training"]["init_checkpoint"] == str(again.version.checkpoint)


def test_init_checkpoint_must_fit_the_model(truth_archive, tmp_path):
    from motionrnn import MotionRNN, MotionRNNConfig, save_checkpoint
    from pipelines.training.run import TrainingError, train

    save_checkpoint(tmp_path / "wide.safetensors", MotionRNN(MotionRNNConfig(hidden=64)))
    cfg = load_config(
        None, [*SMALL_TRAINING, f"training.init_checkpoint={tmp_path / 'wide.safetensors'}"]
    )
    with pytest.raises(TrainingError, match="differs from training.model"):
        train(truth_archive, tmp_path / "registry", cfg)


def kill_rank1_once(marker: str, log: str, at_step: int):
    """A step hook: logs (rank, step); rank 1 dies (os._exit) at ``at_step`` the first time.

    It dies a few seconds after reaching the step: Ray Train registers a reported checkpoint when
    its controller next polls the workers (every 2 s), and a worker that dies before that poll
    takes its report along, which makes the run resume from the checkpoint before.
    """

    def hook(rank: int, step: int) -> None:
        with open(log, "a") as f:
            f.write(f"{rank} {step}\n")
        if rank == 1 and step == at_step and not os.path.exists(marker):
            Path(marker).touch()
            time.sleep(5)
            os._exit(1)

    return hook


@pytest.mark.slow
def test_a_killed_worker_resumes_from_the_last_checkpoint(ray_local, truth_archive, tmp_path):
    from pipelines.training.run import train

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = load_config(
        None, [*SMALL_TRAINING, "training.max_steps=10", f"training.scaling.storage={tmp_path}"]
    )
    log = tmp_path / "steps.log"
    hook = kill_rank1_once(str(tmp_path / "killed"), str(log), at_step=7)
    result = train(truth_archive, tmp_path / "registry", cfg, run_name="fault", step_hook=hook)
    assert (tmp_path / "killed").exists()
    assert result.state.step == 10
    rank1 = [int(line.split()[1]) for line in log.read_text().splitlines() if line[0] == "1"]
    # first attempt: steps 1..7 (killed at 7); the restart resumes after the step-5 checkpoint
    assert rank1 == [1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 10]
    assert [h["step"] for h in result.state.history] == [0, 5, 10]
