"""The training's progress, from the workers to a callback in the driver.

``StepEvent`` is what a worker's step hook (``TrainJob.step_hook``) receives after every
optimiser step and every validation. ``relay(on_progress, step_hook)`` gives the hook to send
the workers: it calls ``step_hook`` in the worker and forwards rank 0's events, through a small
actor, to ``on_progress`` in the driver, in order, about twice a second. (What Ray itself
prints goes to the run folder: ``pipelines.training.raylogs``.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepEvent:
    """Where one worker stands: after an optimiser step, or after a validation (``validation``
    set). At the start of the loop a validation event gives the scores the run starts from."""

    rank: int
    step: int
    epoch: int
    budget: float  # share of the budget spent (max_steps or max_minutes, the first to run out)
    elapsed_s: float  # time in the training loop, over all attempts
    train_loss: float | None = None  # mean training loss of this worker in the epoch so far
    validation: dict[str, dict[str, Any]] | None = None  # pooled scores by method
    lr: float | None = None  # learning rate of the step (of the main parameter group)

    @property
    def time_left_s(self) -> float | None:
        """The time until the budget is spent, at the rate so far (exact for a time budget)."""
        if self.budget <= 0.0:
            return None
        return max(0.0, self.elapsed_s * (1.0 - self.budget) / self.budget)

    def score(self, method: str, metric: str = "csi_1mm") -> float | None:
        return (self.validation or {}).get(method, {}).get(metric)


StepHook = Callable[[StepEvent], None]  # in the worker, on every rank
ProgressCallback = Callable[[StepEvent], None]  # in the driver, rank 0's events


def pooled(validation: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A validation summary without its per-lead scores."""
    return {m: {k: v for k, v in s.items() if k != "per_lead"} for m, s in validation.items()}


# ---- progress: workers -> driver --------------------------------------------------------------


@ray.remote(num_cpus=0)
class _Inbox:
    """Rank 0's events, kept until the driver takes them (one caller: in submission order)."""

    def __init__(self) -> None:
        self.events: list[StepEvent] = []

    def put(self, event: StepEvent) -> None:
        self.events.append(event)

    def take(self) -> list[StepEvent]:
        events, self.events = self.events, []
        return events


@dataclass
class _Hook:
    """The workers' step hook: the caller's hook, then rank 0's events to the inbox.

    A step's event is sent without waiting; a validation's (the last event of every epoch and
    of the run) waits until the inbox has it, and so all before it (one caller's calls run in
    order). Without that wait, events still on their way when the workers finished were lost:
    the run's last steps never shown."""

    step_hook: StepHook | None
    inbox: Any  # ActorHandle of _Inbox, or None
    timeout_s: float = 10.0
    lost: bool = False  # this worker's copy found the inbox gone: the run goes on without it

    def __call__(self, event: StepEvent) -> None:
        if self.step_hook is not None:
            self.step_hook(event)
        if self.inbox is None or event.rank != 0 or self.lost:
            return
        sent = self.inbox.put.remote(event)
        if event.validation is None:
            return
        try:
            ray.get(sent, timeout=self.timeout_s)
        except Exception as exc:  # the driver's display is lost; the training is not
            log.warning("training progress no longer sent: %s", exc)
            self.lost = True


@contextmanager
def relay(
    on_progress: ProgressCallback | None, step_hook: StepHook | None = None, every_s: float = 0.5
) -> Iterator[StepHook | None]:
    """The step hook for ``TrainJob``; while in the block, rank 0's events reach ``on_progress``
    (on a thread of this process), and on leaving, the last of them. Needs Ray up."""
    if on_progress is None:
        yield step_hook
        return
    # on the driver's node, not on a worker node: losing a node does not lose the progress
    # (hard affinity: with soft=True Ray spread these actors over the nodes all the same)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    inbox = _Inbox.options(scheduling_strategy=here).remote()
    stop = threading.Event()
    failed = threading.Event()

    def deliver() -> None:
        try:
            events = ray.get(inbox.take.remote(), timeout=60)
        except Exception as exc:  # the inbox lost: the run goes on without a display
            log.warning("training progress lost: %s", exc)
            failed.set()
            return
        for event in events:
            try:
                on_progress(event)
            except Exception:
                log.exception("the progress callback failed; no more progress is shown")
                failed.set()
                return

    def poll() -> None:
        while not stop.wait(every_s) and not failed.is_set():
            deliver()

    thread = threading.Thread(target=poll, name="motioncast-progress", daemon=True)
    thread.start()
    try:
        yield _Hook(step_hook, inbox)
    finally:
        stop.set()
        thread.join()
        if not failed.is_set():
            deliver()
        ray.kill(inbox)
