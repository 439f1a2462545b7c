"""The training driver: windows from a pinned archive snapshot, a Ray Train run, a registry entry.

    result = train(store, registry, cfg)               # a new run, named motionrnn-<UTC time>
    result = train(store, registry, cfg, run_name=R)   # continue run R from its last checkpoint

The run folder (``training.scaling.storage``/RUN, a local folder or s3://, see
``pipelines.training.runfolder``) holds Ray Train's checkpoints, ``motioncast-run.json`` (the
archive snapshot, the split) and ``motioncast-windows.json`` (the run's windows), so that a
restarted driver trains on exactly the windows the run began with, even if the archive has grown
or the configuration changed since.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from motionrnn import load_checkpoint
from pipelines.config import MotioncastConfig, ScalingSection, TrainingConfig
from pipelines.registry import ModelVersion, Registry
from pipelines.store.archive import Archive
from pipelines.store.repository import is_local
from pipelines.training.loop import (
    BEST_FILE,
    RunState,
    TrainJob,
    read_state,
    train_worker,
)
from pipelines.training.progress import ProgressCallback, StepHook, relay
from pipelines.training.raylogs import RunLogs, ray_logs
from pipelines.training.runfolder import RunFolder
from pipelines.training.windows import SPLITS, Window, split_metadata, split_windows

log = logging.getLogger(__name__)

RUN_MANIFEST = "motioncast-run.json"
RUN_WINDOWS = "motioncast-windows.json"


class TrainingError(RuntimeError):
    """A training run that cannot start or did not finish; the message says why."""


@dataclass(frozen=True)
class TrainResult:
    run_name: str
    run_location: str  # the run folder: a local path or a URL
    state: RunState
    version: ModelVersion


def new_run_name() -> str:
    """motionrnn-<UTC time>: unique per second (Ray resumes a run whose name is reused)."""
    return f"motionrnn-{pd.Timestamp.now('UTC'):%Y%m%dT%H%M%S}"


def collect_windows(
    archive: Archive, snapshot: str, cfg: TrainingConfig
) -> dict[str, list[Window]]:
    """Every complete window of the chosen domains (all by default), by split."""
    domains = cfg.data.domains or archive.domains(snapshot)
    out: dict[str, list[Window]] = {name: [] for name in SPLITS}
    for domain in domains:
        ds = archive.dataset(domain, snapshot)
        times = pd.DatetimeIndex(ds.time.values)
        for name, items in split_windows(
            domain, times, ds.present.values, ds.wet_fraction.values, cfg.data
        ).items():
            out[name].extend(items)
    return out


def spread(windows: list[Window], n: int) -> list[Window]:
    """At most n windows, evenly spread over the list (which is in time order per domain)."""
    if len(windows) <= n:
        return windows
    return [windows[i] for i in np.linspace(0, len(windows) - 1, n).round().astype(int)]


def _manifest(
    folder: RunFolder, store: str, archive: Archive, cfg: TrainingConfig
) -> tuple[dict[str, Any], dict[str, list[Window]]]:
    """The run's data and its windows: read back for a continued run (the windows it recorded,
    whatever the configuration or the archive says now), else pinned now and written."""
    manifest = folder.read_json(RUN_MANIFEST)
    if manifest is not None:
        if manifest["archive"] != store:
            raise TrainingError(
                f"run {folder.name} trained on {manifest['archive']}, not {store}: "
                "use a new run name"
            )
        recorded = folder.read_json(RUN_WINDOWS)
        if recorded is None:
            raise TrainingError(f"run {folder.name}: {RUN_WINDOWS} is missing; use a new run")
        log.info("continuing run %s on snapshot %s", folder.name, manifest["snapshot"])
        return manifest, {
            split: [Window.from_json(w) for w in ws] for split, ws in recorded.items()
        }
    snapshot = archive.head()
    windows = collect_windows(archive, snapshot, cfg)
    if not windows["train"] or not windows["validation"]:
        counts = ", ".join(f"{k} {len(v)}" for k, v in windows.items())
        raise TrainingError(
            f"{store}: not enough complete windows of {cfg.data.frames_in} + "
            f"{cfg.data.frames_out} frames for a run ({counts}); ingest more, or shorten "
            "training.data.block_hours or the frames"
        )
    manifest = {
        "archive": store,
        "snapshot": snapshot,
        "domains": sorted({w.domain for ws in windows.values() for w in ws}),
        "windows": {k: len(v) for k, v in windows.items()},
        "splits": split_metadata(windows, cfg.data.block_hours),
        "created_at": str(pd.Timestamp.now("UTC")),
    }
    folder.write_json(RUN_WINDOWS, {k: [w.to_json() for w in v] for k, v in windows.items()})
    folder.write_json(RUN_MANIFEST, manifest)  # last: a manifest means the windows are there
    return manifest, windows


def _check_init(t: TrainingConfig) -> None:
    """The starting weights must fit the configured model (frames may differ: they are not
    weights)."""
    if t.init_checkpoint is None:
        return
    try:
        given = load_checkpoint(t.init_checkpoint).config
    except Exception as exc:
        raise TrainingError(f"{t.init_checkpoint}: not a motionrnn checkpoint ({exc})") from None
    frames = {"frames_in": t.model.frames_in, "frames_out": t.model.frames_out}
    if replace(given, **frames) != t.model:
        raise TrainingError(
            f"{t.init_checkpoint}: its model {given} differs from training.model {t.model}"
        )


def scaling_config(scaling: ScalingSection) -> Any:
    """Ray Train's ScalingConfig of ``training.scaling``: elastic when ``min_workers`` is set."""
    import ray.train

    return ray.train.ScalingConfig(
        num_workers=(
            (scaling.min_workers, scaling.workers) if scaling.min_workers else scaling.workers
        ),
        use_gpu=scaling.use_gpu,
        resources_per_worker={"CPU": scaling.cpus_per_worker},
        elastic_resize_monitor_interval_s=scaling.resize_every_s,
    )


@contextmanager
def _ray(cfg: TrainingConfig, log_dir: Path) -> Iterator[RunLogs]:
    """Ray for the run, its output in the run folder (``raylogs.ray_logs``): the caller's Ray if
    it is up, else a private local instance (or the cluster at training.scaling.address) that
    is shut down after the run."""
    import ray

    with ray_logs(log_dir) as logs:
        if ray.is_initialized():
            yield logs
            return
        try:
            if cfg.scaling.address is None:
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance
                context = ray.init(num_cpus=os.cpu_count(), log_to_driver=True)
                need = cfg.scaling.workers * cfg.scaling.cpus_per_worker
                have = ray.cluster_resources().get("CPU", 0)
                if need > have:
                    raise TrainingError(
                        f"{cfg.scaling.workers} workers x {cfg.scaling.cpus_per_worker} CPUs "
                        f"need {need:g} CPUs; this machine has {have:g}: lower "
                        "training.scaling.workers"
                    )
            else:
                context = ray.init(address=cfg.scaling.address, log_to_driver=True)
            logging.getLogger("ray").info(
                "Ray session folder: %s", context.address_info["session_dir"]
            )
            yield logs
        finally:
            if ray.is_initialized():  # inside ray_logs: its last lines go to the run's files
                ray.shutdown()


def train(
    store: str | Path,
    registry: str | Path,
    cfg: MotioncastConfig,
    run_name: str | None = None,
    step_hook: StepHook | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train (or continue) a run, register its best model, and return it with its scores.

    ``step_hook`` runs in every worker after each optimiser step and validation (a
    ``StepEvent``); ``on_progress`` gets rank 0's events here, in order, as the run goes. Ray's
    logs and the workers' output go to RUN/ray-logs/, not to the terminal."""
    import ray.train
    from ray.train.torch import TorchTrainer

    t = cfg.training
    if t.init_checkpoint is not None:  # workers' cwd differs
        t = t.model_copy(update={"init_checkpoint": t.init_checkpoint.resolve()})
    _check_init(t)
    store = str(Path(store).resolve()) if is_local(store) else str(store)  # workers' cwd differs
    archive = Archive.from_config(cfg.stores, store)
    run_name = run_name or new_run_name()
    folder = RunFolder(t.scaling.storage, run_name, cfg.stores.object_storage)
    manifest, windows = _manifest(folder, store, archive, t)
    job = TrainJob(
        store=store,
        snapshot=manifest["snapshot"],
        train=windows["train"],
        validation=spread(windows["validation"], t.validation_windows),
        cfg=t,
        step_hook=step_hook,
        storage=cfg.stores.object_storage,
    )
    log.info(
        "run %s: %d training windows, %d validation windows scored, %d x %s worker(s)",
        run_name,
        len(job.train),
        len(job.validation),
        t.scaling.workers,
        "GPU" if t.scaling.use_gpu else "CPU",
    )
    storage_path, storage_filesystem = folder.ray_storage()
    with _ray(t, folder.log_dir) as logs, relay(on_progress, step_hook) as hook:
        trainer = TorchTrainer(
            train_worker,
            train_loop_config=replace(job, step_hook=hook),
            scaling_config=scaling_config(t.scaling),
            run_config=ray.train.RunConfig(
                name=run_name,
                storage_path=storage_path,
                storage_filesystem=storage_filesystem,
                failure_config=ray.train.FailureConfig(max_failures=t.scaling.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=t.scaling.checkpoints_to_keep
                ),
            ),
        )
        try:
            result = trainer.fit()
        except Exception as exc:  # Ray wraps the worker's error; keep its last line
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            raise TrainingError(
                f"run {run_name} failed: {message} (traceback in {logs.driver})"
            ) from exc
    if result.checkpoint is None:
        raise TrainingError(f"run {run_name} ended without a checkpoint")
    with result.checkpoint.as_directory() as checkpoint_dir:
        state = read_state(Path(checkpoint_dir))
        version = Registry(registry).register(
            Path(checkpoint_dir) / BEST_FILE, _card(run_name, folder.location, manifest, job, state)
        )
    log.info(
        "registered %s from run %s: the best validation, step %d of %d",
        version.version,
        run_name,
        state.best["step"],
        state.step,
    )
    return TrainResult(run_name, folder.location, state, version)


def _card(
    run_name: str, location: str, manifest: dict[str, Any], job: TrainJob, state: RunState
) -> dict[str, Any]:
    """What a registered version is: the run's best validation checkpoint, scored on the
    validation windows listed (every method on the same windows and cells)."""
    t = job.cfg
    return {
        "run": run_name,
        "run_location": location,
        "best_step": state.best["step"],
        "model_config": asdict(t.model),
        "data": manifest,
        "training": t.model_dump(mode="json", exclude={"model"}),
        "steps": state.step,
        "epochs": state.epoch,
        "training_minutes": round(state.elapsed_s / 60.0, 2),
        "workers": t.scaling.workers,
        "device": "cuda" if t.scaling.use_gpu else "cpu",
        "validation": state.best["validation"],
        "validation_windows": [w.to_json() for w in job.validation],
        "final_validation": state.validation,
        "history": state.history,
    }
