"""Training: schedules, sampler, scores and baselines; then real Ray Train runs with 2 CPU
workers (slow): end to end into the registry, a killed worker, a continued run."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from pipelines import nowcast
from pipelines.config import OptimiserConfig, SamplingConfig, TransformConfig, load_config
from pipelines.nowcast.motion import motion_field
from pipelines.registry import Registry
from pipelines.scoring.scores import Scores, ScoreSpec
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


def test_fine_tuning_starts_at_the_peak_without_warm_up():
    cfg = OptimiserConfig(warmup_fraction=0.1, min_lr_fraction=0.05)
    assert lr_factor(0.0, cfg, warm_up=False) == pytest.approx(1.0)
    assert lr_factor(0.5, cfg, warm_up=False) == pytest.approx(0.525)
    assert lr_factor(1.0, cfg, warm_up=False) == pytest.approx(0.05)


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


def test_pooling_many_vectors_equals_merging_them_one_by_one():
    rng = np.random.default_rng(5)
    spec = ScoreSpec(leads=3, thresholds=(1.0, 5.0), fss_thresholds=(1.0,), fss_scales=(3,))
    parts = []
    for k in range(6):
        f, o = rng.gamma(0.6, 3.0, size=(2, 3, 20, 30))
        cells = rng.random((3, 20, 30)) > 0.3
        cells[1] &= k % 2 == 0  # lead 2 unknown in half of them
        if k == 3:
            cells[:] = False  # one with nothing scored
        part = Scores(spec)
        part.add(f, o, cells)
        parts.append(part)
    merged = Scores(spec)
    for part in parts:
        merged = merged.merge(part)
    pooled = Scores(spec).pool(np.stack([p.vector() for p in parts]))
    np.testing.assert_allclose(pooled.vector(), merged.vector(), rtol=1e-12, atol=1e-12)
    assert pooled.summary() == merged.summary()


def test_cells_outside_the_mask_are_no_correct_negatives():
    """pysteps' accumulator counts a NaN pair as a correct negative; unknown is not dry."""
    spec = ScoreSpec(leads=2, thresholds=(1.0,))
    f = np.zeros((2, 10, 10))
    o = np.zeros((2, 10, 10))
    f[:, :2, :2] = o[:, :2, :2] = 3.0  # four hits per lead
    cells = np.ones((2, 10, 10), bool)
    cells[:, :, 5:] = False  # half the domain unknown
    scores = Scores(spec)
    scores.add(f, o, cells)
    table = scores.categorical[1.0]
    assert table["hits"].tolist() == [4, 4]
    assert table["correct_negatives"].tolist() == [46, 46]  # 50 known cells, 4 of them wet


def test_scores_match_pysteps_verification_on_random_fields():
    """Pooled over leads, windows and two 'workers' (merged), the scores equal pysteps'
    one-shot scores of every field at once, on the same cells; events are value > threshold."""
    from pysteps.verification.detcatscores import det_cat_fct
    from pysteps.verification.detcontscores import det_cont_fct
    from pysteps.verification.spatialscores import fss

    rng = np.random.default_rng(3)
    spec = ScoreSpec(leads=3, thresholds=(1.0, 5.0), fss_thresholds=(1.0,), fss_scales=(5,))
    fields = [rng.gamma(0.6, 3.0, size=(2, 3, 40, 50)) for _ in range(3)]  # (fc/obs, lead, y, x)
    cells = [rng.random((3, 40, 50)) > 0.2 for _ in range(3)]
    fields[0][1, 0, 0, :5] = 1.0  # on the threshold: not an event
    parts = [Scores(spec), Scores(spec)]
    for k, ((f, o), c) in enumerate(zip(fields, cells, strict=True)):
        parts[k % 2].add(f, o, c)
    merged = parts[0].merge(parts[0].from_vector(parts[1].vector()))
    out = merged.summary()
    for lead in range(3):
        f = np.concatenate(
            [np.where(c[lead], x[0, lead], np.nan) for x, c in zip(fields, cells, strict=True)]
        )
        o = np.concatenate(
            [np.where(c[lead], x[1, lead], np.nan) for x, c in zip(fields, cells, strict=True)]
        )
        for t in (1.0, 5.0):
            direct = det_cat_fct(f, o, t, ["CSI", "POD", "FAR", "BIAS"])
            for score, value in direct.items():
                name = f"{score.lower()}_{t:g}mm"
                assert out["per_lead"][name][lead] == pytest.approx(value, abs=1e-6), name
        cont = det_cont_fct(f, o, ["MAE", "RMSE", "ME"])
        assert out["per_lead"]["mae"][lead] == pytest.approx(cont["MAE"], abs=1e-6)
        assert out["per_lead"]["rmse"][lead] == pytest.approx(cont["RMSE"], abs=1e-6)
        assert out["per_lead"]["me"][lead] == pytest.approx(cont["ME"], abs=1e-6)
    # FSS pools its sums over fields: one field's FSS is pysteps' fss of that field
    single = Scores(spec)
    single.add(fields[0][0], fields[0][1], cells[0])
    lead0 = fss(
        np.where(cells[0][0], fields[0][0, 0], np.nan),
        np.where(cells[0][0], fields[0][1, 0], np.nan),
        1.0,
        5,
    )
    assert single.summary()["per_lead"]["fss_1mm_5"][0] == pytest.approx(lead0, abs=1e-6)
    # pooled over leads: the tables summed
    all_f = np.concatenate(
        [np.where(c, x[0], np.nan).ravel() for x, c in zip(fields, cells, strict=True)]
    )
    all_o = np.concatenate(
        [np.where(c, x[1], np.nan).ravel() for x, c in zip(fields, cells, strict=True)]
    )
    csi = det_cat_fct(all_f, all_o, 1.0, ["CSI"])["CSI"]
    assert out["csi_1mm"] == pytest.approx(csi, abs=1e-6)  # summaries keep 6 decimals
    assert out["mae"] == pytest.approx(det_cont_fct(all_f, all_o, ["MAE"])["MAE"], abs=1e-6)


def _disc_frames() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:64, 0:64]
    frames = np.stack(
        [np.where((x - 12 - 2 * t) ** 2 + (y - 32) ** 2 < 64, 5.0, 0.0) for t in range(6)]
    ).astype(np.float32)  # a disc moving 2 cells a step to the east, centre at 22 last
    return frames, x


def test_extrapolation_moves_rain_with_the_flow_and_persistence_does_not():
    frames, x = _disc_frames()
    velocity = motion_field(frames, TransformConfig())
    assert np.median(velocity[0][frames[-1] > 0]) == pytest.approx(2.0, abs=0.3)
    forecast = nowcast.get_method("extrapolation")(frames, 5, velocity)[0]
    centre = (np.nan_to_num(forecast[4]) * x).sum() / np.nan_to_num(forecast[4]).sum()
    assert centre == pytest.approx(32.0, abs=1.5)  # 5 more steps of 2 cells
    still = nowcast.get_method("persistence")(frames, 3, velocity)[0]
    assert still.shape == (3, 64, 64) and np.array_equal(still[2], frames[-1])
    with pytest.raises(ValueError, match="unknown baseline"):
        nowcast.get_method("steps")


def test_no_baseline_advects_dryness_in_from_outside_coverage():
    """Rain moving east out of an unknown western strip: what comes from the strip is unknown
    (NaN) in every baseline's forecast, never dry."""
    frames, _ = _disc_frames()
    frames *= np.random.default_rng(0).lognormal(0.0, 0.3, frames.shape)  # it evolves a little
    frames[:, :, :6] = np.nan  # outside coverage
    velocity = np.zeros((2, 64, 64), dtype=np.float32)
    velocity[0] = 2.0
    for name in ("extrapolation", "sprog"):
        forecast = nowcast.get_method(name)(frames, 3, velocity)[0]
        assert np.isnan(forecast[2][:, :11]).all(), name  # 6 + 2 x 3 cells: from the strip
        assert np.isfinite(forecast[2][:, 14:]).all(), name
    sprog = nowcast.get_method("sprog")(frames, 3, velocity)[0]
    assert np.nanmax(sprog[0]) > 1.0  # the disc is still there


# ---- real Ray Train runs -------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_train_checkpoint_register_and_continue(ray_local, truth_archive, tmp_path):
    from pipelines.training.run import train

    cfg = load_config(
        None, [*SMALL_TRAINING, "training.max_steps=20", f"training.scaling.storage={tmp_path}"]
    )
    events = []
    result = train(
        truth_archive, tmp_path / "registry", cfg, run_name="e2e", on_progress=events.append
    )
    state = result.state
    assert state.step == 20 and state.epoch == 4
    # rank 0's progress reached the driver as it went: every step in order, every validation
    assert {e.rank for e in events} == {0}
    assert [e.step for e in events if e.validation is None] == list(range(1, 21))
    validations = [e for e in events if e.validation is not None]
    assert [e.step for e in validations] == [0, 5, 10, 15, 20]
    assert validations[-1].validation == {
        m: {k: v for k, v in s.items() if k != "per_lead"} for m, s in state.validation.items()
    }
    assert all(0.0 <= e.score(m) <= 1.0 for e in validations for m in state.validation)
    assert events[-1].budget == 1.0 and events[-1].time_left_s == 0.0
    assert (tmp_path / "e2e" / "ray-logs" / "workers.log").exists()
    assert [h["step"] for h in state.history] == [0, 5, 10, 15, 20]
    start = validations[0].validation  # the untrained sprog model is S-PROG
    assert start["model"]["csi_1mm"] == pytest.approx(start["sprog"]["csi_1mm"], abs=0.01)
    # it learns (validation: the training losses of the prior's stage, on whole domains, and
    # of the stack's, on crops, are not comparable)
    assert state.history[-1]["val_loss"] < state.history[0]["val_loss"]
    assert sorted((tmp_path / "e2e").glob("checkpoint_step*"))  # checkpoints on storage
    card = Registry(tmp_path / "registry").get("v0001").card
    assert set(card["validation"]) == {"model", "extrapolation", "persistence", "sprog"}
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
    # the registered weights are the run's best validation (here not its last checkpoint)
    best_step = again.version.card["best_step"]
    assert again.version.card["validation"] == again.state.best["validation"]
    assert again.state.best["score"] >= max(e.score("model") for e in validations)
    # fine-tuning starts from the given weights: its first validation is v0002's best
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
    registered = next(h for h in again.state.history if h["step"] == best_step)
    assert tuned.state.history[0]["val_loss"] == pytest.approx(registered["val_loss"], rel=1e-5)
    assert tuned.version.card["training"]["init_checkpoint"] == str(again.version.checkpoint)


def test_scaling_config_is_elastic_only_with_min_workers():
    from pipelines.training.run import scaling_config

    fixed = scaling_config(load_config(None, ["training.scaling.workers=3"]).training.scaling)
    assert fixed.num_workers == 3 and not fixed.elasticity_enabled
    elastic = load_config(
        None, ["training.scaling.min_workers=1", "training.scaling.resize_every_s=5"]
    ).training.scaling
    config = scaling_config(elastic)
    assert (config.min_workers, config.max_workers) == (1, 2)
    assert config.elastic_resize_monitor_interval_s == 5.0


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
    """A step hook: logs (rank, step) of each optimiser step; rank 1 dies (os._exit) at
    ``at_step`` the first time.

    It dies a few seconds after reaching the step: Ray Train registers a reported checkpoint when
    its controller next polls the workers (every 2 s), and a worker that dies before that poll
    takes its report along, which makes the run resume from the checkpoint before.
    """

    def hook(event) -> None:
        if event.validation is not None:
            return
        rank, step = event.rank, event.step
        with open(log, "a") as f:
            f.write(f"{rank} {step} {event.lr!r}\n")
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
    lines = [line.split() for line in log.read_text().splitlines()]
    rank1 = [int(step) for rank, step, _ in lines if rank == "1"]
    # first attempt: steps 1..7 (killed at 7); the restart resumes after the step-5 checkpoint
    assert rank1 == [1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 10]
    assert [h["step"] for h in result.state.history] == [0, 5, 10]
    # the resumed schedule is the uninterrupted one: steps 6 and 7 ran before and after the
    # kill at the same learning rate, and every step's rate is the schedule's at its step
    rates = [(int(step), float(lr)) for rank, step, lr in lines if rank == "1"]
    assert rates[5] == rates[7] and rates[6] == rates[8]
    peak = cfg.training.optimiser.lr
    for step, lr in rates:
        expected = peak * lr_factor((step - 1) / 10, cfg.training.optimiser)
        assert lr == pytest.approx(expected, rel=1e-9)


# ---- a quiet driver: progress from rank 0, Ray's output in the run folder ------------------


def test_step_events_know_the_time_left_and_their_scores():
    from pipelines.training.progress import StepEvent

    event = StepEvent(0, 25, 1, budget=0.25, elapsed_s=30.0, validation={"model": {"csi_1mm": 0.4}})
    assert event.time_left_s == pytest.approx(90.0)  # 30 s for a quarter: 90 s to go
    assert event.score("model") == 0.4 and event.score("persistence") is None
    assert StepEvent(0, 0, 0, budget=0.0, elapsed_s=0.0).time_left_s is None


def test_the_train_verb_logs_one_line_per_validation_off_a_terminal(caplog):
    from pipelines.cli.train import TrainingDisplay
    from pipelines.training.progress import StepEvent

    scores = {"model": 0.31, "sprog": 0.42, "extrapolation": 0.4, "persistence": 0.35}
    caplog.set_level(logging.INFO, logger="pipelines.cli")
    with TrainingDisplay(max_steps=100) as display:  # pytest's stderr is no terminal
        display(StepEvent(0, 19, 0, 0.19, 11.4, train_loss=0.25))
        validation = {m: {"csi_1mm": v} for m, v in scores.items()}
        display(StepEvent(0, 20, 1, 0.2, 12.0, train_loss=0.2, validation=validation))
    assert [r.getMessage() for r in caplog.records] == [
        "step 20/100: training loss 0.2000; validation CSI 1 mm/h: model 0.310, "
        "S-PROG 0.420, extrap. 0.400; 0:00:48 left"
    ]


@pytest.mark.slow
def test_the_driver_gets_rank_0s_events_in_order(ray_local, tmp_path):
    import ray

    from pipelines.training.progress import StepEvent, relay

    @ray.remote(num_cpus=0)
    def worker(hook, rank: int) -> None:  # what train_worker does with job.step_hook
        hook(StepEvent(rank, 0, 0, 0.0, 0.0, validation={"model": {"csi_1mm": 0.0}}))
        for step in range(1, 31):
            hook(StepEvent(rank, step, 0, step / 30, step * 0.1, train_loss=1.0 / step))
        hook(StepEvent(rank, 30, 1, 1.0, 3.0, 0.5, validation={"model": {"csi_1mm": 0.3}}))

    seen = tmp_path / "seen"

    def worker_hook(event: StepEvent) -> None:  # the caller's hook still runs on every rank
        with open(seen, "a") as f:
            f.write(f"{event.rank}\n")

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    events: list[StepEvent] = []
    with relay(events.append, worker_hook, every_s=0.1) as hook:
        ray.get([worker.remote(hook, 0), worker.remote(hook, 1)])
    assert [e.rank for e in events] == [0] * 32
    assert [e.step for e in events] == [0, *range(1, 31), 30]
    assert [e.score("model") for e in events if e.validation] == [0.0, 0.3]
    assert sorted(seen.read_text().split()) == ["0"] * 32 + ["1"] * 32


@pytest.mark.slow
def test_a_validation_goes_on_only_once_the_inbox_has_every_event(ray_local, caplog):
    """Regression: the hook sent rank 0's events without waiting, and events still on their way
    when the workers finished were lost (CI saw 19 of 32: the run's last steps never shown).
    The inbox here takes 0.5 s per event and answers the driver meanwhile."""
    import asyncio

    import ray

    from pipelines.training.progress import StepEvent, _Hook

    @ray.remote(num_cpus=0)
    class SlowInbox:  # an async actor: starts calls in order, and answers `count` at once
        def __init__(self) -> None:
            self.events: list[StepEvent] = []

        async def put(self, event: StepEvent) -> None:
            await asyncio.sleep(0.5)
            self.events.append(event)

        async def count(self) -> int:
            return len(self.events)

    @ray.remote(num_cpus=0)
    def worker(hook) -> None:  # two steps and the epoch's validation
        hook(StepEvent(0, 1, 0, 0.5, 0.0, train_loss=1.0))
        hook(StepEvent(0, 2, 0, 1.0, 0.0, train_loss=1.0))
        hook(StepEvent(0, 2, 1, 1.0, 0.0, validation={"model": {"csi_1mm": 0.3}}))

    inbox = SlowInbox.remote()
    ray.get(worker.remote(_Hook(None, inbox)))
    assert ray.get(inbox.count.remote()) == 3  # all in when the worker has finished

    hook = _Hook(None, inbox)  # the inbox lost: the steps go on, one warning
    ray.kill(inbox)
    caplog.set_level(logging.WARNING, logger="pipelines.training.progress")
    for step in range(3):
        hook(StepEvent(0, step, 0, 0.0, 0.0, validation={"model": {}}))
    assert hook.lost
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith("training progress no longer sent")


@pytest.mark.slow
def test_the_train_verb_shows_progress_and_keeps_ray_in_the_run_folder(truth_archive, tmp_path):
    """`motioncast train` as `make demo` runs it (its own Ray instance): a few lines of its own
    on the terminal; Ray's and the workers' output in RUN/ray-logs."""
    import subprocess

    sets = [arg for item in SMALL_TRAINING for arg in ("--set", item)]
    command = [
        *(sys.executable, "-m", "pipelines.cli", "train", "--store", str(truth_archive)),
        *("--registry", str(tmp_path / "registry"), "--workers", "2", "--max-steps", "10"),
        *("--run-name", "quiet", *sets, "--set", f"training.scaling.storage={tmp_path}"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    shown = done.stdout + done.stderr
    assert done.returncode == 0, shown
    for noise in ("TrainingReport", "PreemptionWatcher", "dashboard", "RayTrainWorker", "pid="):
        assert noise not in shown
    assert len(shown.splitlines()) <= 20, shown
    assert "step 10/10: training loss" in shown and "registered v0001" in shown
    logs = tmp_path / "quiet" / "ray-logs"
    assert str(logs) in shown  # said once where they are
    workers = (logs / "workers.log").read_text()
    assert "(RayTrainWorker pid=" in workers and "TrainingReport(" in workers
    assert "epoch 2 step 10: train loss" in workers  # the worker's own log
    assert "dashboard" in (logs / "driver.log").read_text()


def fail_at_step(step: int):
    """A step hook: rank 0 raises at ``step``."""

    def hook(event) -> None:
        if event.rank == 0 and event.validation is None and event.step == step:
            raise RuntimeError(f"no rain at step {step}")

    return hook


@pytest.mark.slow
def test_a_failed_run_is_one_line_and_its_traceback_is_in_the_run_folder(
    ray_local, truth_archive, tmp_path
):
    from pipelines.training.run import TrainingError, train

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = load_config(
        None,
        [
            *SMALL_TRAINING,
            "training.max_steps=10",
            "training.scaling.max_failures=0",
            f"training.scaling.storage={tmp_path}",
        ],
    )
    with pytest.raises(TrainingError) as failed:
        train(truth_archive, tmp_path / "registry", cfg, run_name="bad", step_hook=fail_at_step(3))
    message = str(failed.value)
    driver_log = tmp_path / "bad" / "ray-logs" / "driver.log"
    assert "\n" not in message and "no rain at step 3" in message and str(driver_log) in message
    logged = driver_log.read_text()
    assert "Traceback" in logged and "RuntimeError: no rain at step 3" in logged


def test_a_continued_run_uses_the_windows_it_recorded(truth_archive, tmp_path):
    """Regression: the README said a continued run reuses its recorded windows, but they were
    recomputed from the current configuration (another seed or block length moved them)."""
    from pipelines.training.run import RUN_WINDOWS, _manifest
    from pipelines.training.runfolder import RunFolder

    archive = Archive(truth_archive)
    first_cfg = load_config(None, SMALL_TRAINING).training
    folder = RunFolder(str(tmp_path), "r")
    manifest, windows = _manifest(folder, str(truth_archive), archive, first_cfg)
    assert (tmp_path / "r" / RUN_WINDOWS).exists()
    other = load_config(None, [*SMALL_TRAINING, "training.data.seed=7"]).training
    again_manifest, again = _manifest(folder, str(truth_archive), archive, other)
    assert again == windows and again_manifest == manifest
    fresh = _manifest(RunFolder(str(tmp_path), "fresh"), str(truth_archive), archive, other)[1]
    assert fresh != windows  # the other seed does split differently


def test_run_folder_files_on_s3(s3):
    from pipelines.training.runfolder import RunFolder

    folder = RunFolder("s3://motioncast/runs", "r1")
    assert folder.read_json("a.json") is None
    folder.write_json("a.json", {"x": [1, 2]})
    assert folder.read_json("a.json") == {"x": [1, 2]}
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="motioncast")["Contents"]]
    assert keys == ["runs/r1/a.json"] and folder.location == "s3://motioncast/runs/r1"
    path, _ = folder.ray_storage()
    assert path == "motioncast/runs"


def test_a_resumed_optimiser_keeps_the_configured_peak_learning_rates():
    """Regression (issue 11): the peaks were read after the checkpoint's optimiser state was
    loaded, i.e. the decayed rates of the saved step, so the schedule shrank at every resume."""
    from motionrnn import MotionRNN
    from pipelines.training.loop import make_optimiser

    cfg = load_config(None, SMALL_TRAINING).training
    model = MotionRNN(cfg.model)
    optimiser, peaks = make_optimiser(model, cfg)
    assert peaks[0] == pytest.approx(0.003) and len(peaks) == len(optimiser.param_groups)
    for group in optimiser.param_groups:  # half-way down the schedule when it is saved
        group["lr"] *= 0.5
    resumed, resumed_peaks = make_optimiser(model, cfg, optimiser.state_dict())
    assert resumed_peaks == peaks
    assert [g["lr"] for g in resumed.param_groups] == [p * 0.5 for p in peaks]
