"""The training loop each Ray Train worker runs (``train_worker``), and its checkpoints.

One loop for one CPU or many GPUs: ``prepare_model`` wraps the model in DDP (gloo on CPU, NCCL
on GPU); each worker draws its own windows; every ``steps_per_epoch`` steps the workers score
their share of the validation windows, rank 0 writes a checkpoint and all report it through
``ray.train.report``. A restarted worker group (``FailureConfig``) or a restarted driver with the
same run name resumes from the latest checkpoint: model, optimiser, step, epoch, time spent.

A checkpoint folder holds ``model.safetensors`` (motionrnn checkpoint), ``best.safetensors`` (the
weights that scored best on validation so far: what the run registers), ``optimiser.pt`` (a
plain tensor state dict, loaded with ``weights_only``) and ``state.json`` (``RunState``).

The learning rate and teacher forcing follow the share of the budget spent; a resumed run goes
on from the step (and time) it had reached, so its schedule is the uninterrupted run's. A
fine-tuning run (``init_checkpoint``) starts at its peak learning rate: no warm-up, which would
shake the trained weights it starts from.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from motionrnn import (
    KNOWN,
    MotionRNN,
    event_loss,
    fss_loss,
    intensity_weights,
    load_checkpoint,
    motion_smoothness,
    next_frame_loss,
    parameter_groups,
    save_checkpoint,
    teacher_mask,
)
from pipelines.config import ObjectStorageConfig, TrainingConfig
from pipelines.nowcast.transform import RainTransform
from pipelines.registry import PROMOTION_METRIC
from pipelines.training.dataset import LOADER_CONTEXT, Sample, WindowDataset, prior_of
from pipelines.training.prior_stage import frozen_prior, groups_of, prior_step
from pipelines.training.progress import StepEvent, StepHook, pooled
from pipelines.training.sampler import WeightedWindowSampler
from pipelines.training.schedule import lr_factor, progress, teacher_probabilities
from pipelines.training.validation import PAIRED, Evaluation, Validator, model_inputs
from pipelines.training.windows import Window

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
OPTIMISER_FILE = "optimiser.pt"
STATE_FILE = "state.json"


@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    elapsed_s: float = 0.0  # time spent in the training loop, over all attempts
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per validation
    validation: dict[str, Any] = field(default_factory=dict)  # latest scores, by method
    best: dict[str, Any] = field(default_factory=dict)  # step, score, validation of the best


@dataclass
class TrainJob:
    """What the driver sends every worker."""

    store: str
    snapshot: str
    train: list[Window]
    validation: list[Window]
    cfg: TrainingConfig
    step_hook: StepHook | None = None  # every rank, after each step and validation (progress)
    storage: ObjectStorageConfig | None = None  # how to reach an s3:// store


def read_state(folder: Path) -> RunState:
    return RunState(**json.loads((folder / STATE_FILE).read_text()))


def _all_reduce(values: np.ndarray, op: dist.ReduceOp, device: torch.device) -> np.ndarray:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.as_tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.cpu().numpy()


def _validate(
    validator: Validator, model: MotionRNN, device: torch.device, amp: bool
) -> dict[str, Any]:
    """Every rank scores its windows; the accumulators of all ranks are merged (pysteps)."""
    local: Evaluation = validator.run(model, device, amp)
    if not (dist.is_available() and dist.is_initialized()):
        return local.summary()
    mine = torch.as_tensor(local.vector(), dtype=torch.float64, device=device)
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    parts = [local.from_vector(g.cpu().numpy()) for g in gathered]
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total.summary()


class Loss:
    """The configured training loss (``LossConfig``) of one batch."""

    def __init__(self, cfg: TrainingConfig, device: torch.device):
        transform = RainTransform(cfg.data.transform)
        edges = transform.forward(np.array(cfg.loss.intensity_mm_h))
        self.edges = torch.as_tensor(edges, device=device)
        self.weights = torch.as_tensor(cfg.loss.intensity_weights, device=device)
        levels = transform.forward(np.array(cfg.loss.events_mm_h))
        self.levels = torch.as_tensor(levels, device=device)
        self.softness = cfg.loss.events_softness_db / transform.span_db
        self.fss_levels = [float(v) for v in transform.forward(np.array(cfg.loss.fss_mm_h))]
        self.fss_softness = cfg.loss.fss_softness_db / transform.span_db
        self.cfg = cfg.loss

    def __call__(self, prediction: Any, batch: Sample) -> torch.Tensor:
        weights = intensity_weights(batch.frames, self.edges, self.weights)
        seen, start = batch.seen, prediction.start
        if prediction.known is not None:  # an advected value read from unknown cells: unknown
            seen = seen.clone()
            seen[:, start:] &= prediction.known >= KNOWN
        frames = prediction.frames.float()
        loss = next_frame_loss(
            frames, batch.frames, seen, weights, mse=self.cfg.mse, mae=self.cfg.mae, start=start
        )
        if self.cfg.events:
            loss = loss + self.cfg.events * event_loss(
                frames, batch.frames, self.levels, self.softness, seen, start=start
            )
        if self.cfg.fss:
            loss = loss + self.cfg.fss * fss_loss(
                frames,
                batch.frames,
                self.fss_levels,
                self.fss_softness,
                self.cfg.fss_window,
                seen,
                start=start,
            )
        if prediction.motion is not None and self.cfg.motion_smoothness:
            loss = loss + self.cfg.motion_smoothness * motion_smoothness(prediction.motion.float())
        return loss


def _save(
    folder: Path,
    model: MotionRNN,
    best: MotionRNN,
    optimiser: torch.optim.Optimizer,
    state: RunState,
) -> None:
    save_checkpoint(folder / MODEL_FILE, model, {"step": str(state.step)})
    save_checkpoint(folder / BEST_FILE, best, {"step": str(state.best.get("step", 0))})
    torch.save(optimiser.state_dict(), folder / OPTIMISER_FILE)
    (folder / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))


def _keep_if_best(state: RunState, model: MotionRNN, best: MotionRNN) -> None:
    """After a validation: the model becomes the run's best if it scores higher on the
    promotion metric (ties keep the earlier one; the first validation is the first best)."""
    score = state.validation.get("model", {}).get(PROMOTION_METRIC)
    held = state.best.get("score")
    if state.best and (score is None or (held is not None and score <= held)):
        return
    best.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    state.best = {"step": state.step, "score": score, "validation": state.validation}


def _report(
    state: RunState,
    model: MotionRNN,
    best: MotionRNN,
    optimiser: torch.optim.Optimizer,
    rank: int,
    **metrics: Any,
) -> None:
    model_scores = state.validation.get("model", {})
    flat = {
        "step": state.step,
        "epoch": state.epoch,
        **{k: v for k, v in model_scores.items() if k not in ("per_lead", PAIRED)},
        **metrics,
    }
    if rank != 0:
        ray.train.report(flat, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        _save(Path(tmp), model, best, optimiser, state)
        ray.train.report(
            flat,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"checkpoint_step{state.step:07d}",
        )


def make_optimiser(
    model: torch.nn.Module, cfg: TrainingConfig, state: dict | None = None
) -> tuple[torch.optim.Optimizer, list[float]]:
    """AdamW over the model's parameter groups, and each group's peak learning rate.

    The peaks come from the configuration, before a checkpoint's state is loaded: that state
    holds the learning rates of the step it was saved at, already decayed (reading the peaks
    after loading shrank the schedule again at every resume)."""
    optimiser = torch.optim.AdamW(
        parameter_groups(
            model, cfg.optimiser.lr, cfg.optimiser.offset_lr_scale, cfg.optimiser.prior_lr
        ),
        weight_decay=cfg.optimiser.weight_decay,
    )
    peak_lrs = [g["lr"] for g in optimiser.param_groups]
    if state is not None:
        optimiser.load_state_dict(state)
    return optimiser, peak_lrs


def train_worker(job: TrainJob) -> None:
    """The loop of one worker (``TorchTrainer``'s ``train_loop_per_worker``)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = job.cfg
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    torch.manual_seed(cfg.data.seed)  # the same initial weights on every rank
    amp = cfg.amp and device.type == "cuda"

    model = MotionRNN(cfg.model)
    if model.prior is not None:
        model.prior.learn(cfg.prior_learns)
    state = RunState()
    optimiser_state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            model.load_state_dict(load_checkpoint(Path(folder) / MODEL_FILE).state_dict())
            best = load_checkpoint(Path(folder) / BEST_FILE)
            state = read_state(Path(folder))
            optimiser_state = torch.load(Path(folder) / OPTIMISER_FILE, weights_only=True)
        log.info("rank %d resumes at step %d (epoch %d)", rank, state.step, state.epoch)
    else:
        if cfg.init_checkpoint is not None:
            model.load_state_dict(load_checkpoint(cfg.init_checkpoint).state_dict())
        best = copy.deepcopy(model)  # on the CPU: a copy of the weights that scored best
    model.to(device)  # wrapped in DDP (when world > 1) by the stage that trains the stack
    optimiser, peak_lrs = make_optimiser(model, cfg, optimiser_state)

    def loader(
        dataset: WindowDataset, batch_size: int, per_step: int
    ) -> torch.utils.data.DataLoader:
        """The worker's windows of an epoch (per_step a step), drawn by wet area."""
        sampler = WeightedWindowSampler(
            [w.weight for w in job.train], cfg.steps_per_epoch * per_step, cfg.data.seed, rank
        )
        sampler.set_epoch(state.epoch)
        dataset.set_epoch(state.epoch)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=cfg.scaling.loader_workers,
            multiprocessing_context=LOADER_CONTEXT if cfg.scaling.loader_workers else None,
            pin_memory=device.type == "cuda",
        )

    def train_windows(prior: torch.nn.Module | None = None, whole: bool = False) -> WindowDataset:
        return WindowDataset(
            job.store,
            job.train,
            cfg.data,
            augment=not whole,
            snapshot=job.snapshot,
            storage=job.storage,
            whole_domain_multiple=1 if whole else None,
            prior=prior,
        )

    prior_stage = model.prior is not None and cfg.prior_share > 0
    whole_set = train_windows(whole=True) if prior_stage else None
    train_set: WindowDataset | None = None  # the recurrent stack's crops, made when needed
    val_set = WindowDataset(
        job.store,
        job.validation,
        cfg.data,
        augment=False,
        snapshot=job.snapshot,
        storage=job.storage,
        whole_domain_multiple=cfg.model.patch if cfg.validation_area == "domain" else None,
    )
    validator = Validator(val_set, range(rank, len(val_set), world), cfg, cfg.batch_size)
    loss_of = Loss(cfg, device)
    n_in, n_out = cfg.data.frames_in, cfg.data.frames_out
    generator = torch.Generator().manual_seed(cfg.data.seed * 1000 + rank)

    if not state.history:  # the untrained model and the baselines: where the run starts from
        state.validation = _validate(validator, model, device, amp)
        state.history.append({"step": 0, "val_loss": state.validation["model"]["val_loss"]})
        _keep_if_best(state, model, best)
        _report(state, model, best, optimiser, rank)

    started, spent_before = time.monotonic(), state.elapsed_s

    def emit(
        train_loss: float | None = None, validation: bool = False, lr: float | None = None
    ) -> None:
        if job.step_hook is None:
            return
        elapsed = spent_before + time.monotonic() - started
        job.step_hook(
            StepEvent(
                rank=rank,
                step=state.step,
                epoch=state.epoch,
                budget=progress(state.step, elapsed, cfg.max_steps, cfg.max_minutes),
                elapsed_s=elapsed,
                train_loss=train_loss,
                validation=pooled(state.validation) if validation else None,
                lr=lr,
            )
        )

    emit(validation=True)  # the scores the run starts from

    def budget_spent() -> float:
        elapsed = spent_before + time.monotonic() - started
        state.elapsed_s = float(_all_reduce(np.array([elapsed]), dist.ReduceOp.MAX, device)[0])
        return progress(state.step, state.elapsed_s, cfg.max_steps, cfg.max_minutes)

    def set_lr(p: float) -> None:
        factor = lr_factor(p, cfg.optimiser, warm_up=cfg.init_checkpoint is None)
        for group, peak in zip(optimiser.param_groups, peak_lrs, strict=True):
            group["lr"] = peak * factor

    def after_step(loss_sum: float, steps: int, loss: float) -> tuple[float, int]:
        state.step += 1
        loss_sum, steps = loss_sum + loss, steps + 1
        emit(train_loss=loss_sum / steps, lr=optimiser.param_groups[0]["lr"])
        return loss_sum, steps

    while budget_spent() < 1.0:
        loss_sum, steps = 0.0, 0
        if prior_stage and budget_spent() < cfg.prior_share:  # stage 1, by whole epochs
            windows = loader(whole_set, 1, cfg.prior_batch)
            for samples in groups_of(windows, cfg.prior_batch):
                p = budget_spent()
                if p >= 1.0:
                    break
                set_lr(p)
                loss = prior_step(
                    model, optimiser, samples, loss_of, n_in, n_out, device, cfg.optimiser.clip_norm
                )
                loss_sum, steps = after_step(loss_sum, steps, loss)
        else:
            if train_set is None:  # stage 2 (or the only one): the stack on crops
                prior = frozen_prior(model) if model.prior is not None else None
                ddp_model = ray.train.torch.prepare_model(model)  # DDP over what learns
                train_set = train_windows(prior)
            for batch in loader(train_set, cfg.batch_size, cfg.batch_size):
                p = budget_spent()
                if p >= 1.0:
                    break
                set_lr(p)
                batch = Sample(*(t.to(device, non_blocking=True) for t in batch))
                inputs, coverage, motion = model_inputs(batch, n_in)
                probabilities = teacher_probabilities(p, cfg.sampling)
                teacher = None
                if probabilities is not None:
                    teacher = teacher_mask(
                        probabilities, len(inputs), n_in, n_out, generator, device=device
                    )
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    prediction = ddp_model(
                        inputs,
                        n_out,
                        coverage=coverage,
                        motion=motion,
                        targets=batch.frames[:, n_in:],
                        teacher=teacher,
                        seen=batch.seen[:, :n_in].float(),
                        prior=prior_of(batch),
                    )
                loss = loss_of(prediction, batch)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(ddp_model.parameters(), cfg.optimiser.clip_norm)
                optimiser.step()
                loss_sum, steps = after_step(loss_sum, steps, loss.item())
        state.epoch += 1
        budget_spent()
        state.validation = _validate(validator, model, device, amp)
        train_loss = loss_sum / max(steps, 1)
        state.history.append(
            {
                "step": state.step,
                "epoch": state.epoch,
                "train_loss": train_loss,
                "val_loss": state.validation["model"]["val_loss"],
                "elapsed_s": round(state.elapsed_s, 1),
                **(
                    {"gpu_peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}
                    if device.type == "cuda"
                    else {}
                ),
            }
        )
        if rank == 0:
            log.info(
                "epoch %d step %d: train loss %.5f, validation loss %.5f (%.0f s)",
                state.epoch,
                state.step,
                train_loss,
                state.validation["model"]["val_loss"] or float("nan"),
                state.elapsed_s,
            )
        _keep_if_best(state, model, best)
        _report(state, model, best, optimiser, rank, train_loss=train_loss)
        emit(train_loss=train_loss, validation=True)
