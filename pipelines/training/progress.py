"""A quiet driver: Ray's output goes to the run folder, the training's progress to a callback.

``StepEvent`` is what a worker's step hook (``TrainJob.step_hook``) receives after every
optimiser step and every validation. ``relay(on_progress, step_hook)`` gives the hook to send
the workers: it calls ``step_hook`` in the worker and forwards rank 0's events, through a small
actor, to ``on_progress`` in the driver, in order, about twice a second.

``ray_logs(run_dir)`` sends what Ray would print in the driver to ``RUN/ray-logs/``:

- ``driver.log``: the driver's Ray logger (start-up, dashboard address, warnings), this
  package's driver log, and the traceback of a run that failed;
- ``workers.log``: the output of every process of the job that Ray forwards to the driver (the
  Ray Train controller and workers: their logs and prints, Ray Train's reports, Ray core
  messages) and the errors Ray publishes for the job (a worker that died), one line each,
  prefixed like Ray's console lines.

Ray has no public switch to send forwarded output elsewhere than the terminal: this module
swaps the handler Ray installs for it (``ray._private``, pinned Ray) while a run lasts. Without
that hook (another Ray version) the output stays where Ray puts it, and a warning says so.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

log = logging.getLogger(__name__)

LOG_DIR = "ray-logs"
DRIVER_LOG = "driver.log"
WORKERS_LOG = "workers.log"


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


# ---- Ray's output -> the run folder -----------------------------------------------------------


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in Ray's lines (the dashboard address)


class _PlainFileHandler(logging.FileHandler):
    def format(self, record: logging.LogRecord) -> str:
        return _ANSI.sub("", super().format(record))


class _OutputFile:
    """Output batches as Ray forwards them ({lines, pid, ip, actor_name, task_name, ...}) to one
    file, each line prefixed like Ray's console lines; of the autoscaler only its events."""

    def __init__(self, path: Path, autoscaler_events: Callable[[list[str]], Iterator[str]]):
        self.path = path
        self._events = autoscaler_events
        self._file = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, data: dict[str, Any], ignore_prefix: bool = False) -> None:
        pid, lines = data.get("pid"), data.get("lines", [])
        if pid == "autoscaler":
            prefix, lines = "(autoscaler)", list(self._events(lines))
        elif pid == "raylet":
            prefix = "(raylet)"
        else:
            name = data.get("actor_name") or data.get("task_name")
            ip = data.get("ip")
            at = f", ip={ip}" if ip and ip != data.get("localhost") else ""
            prefix = f"({name + ' ' if name else ''}pid={pid}{at})"
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            if not self._file.closed:
                self._file.writelines(f"{stamp} {prefix} {_ANSI.sub('', x)}\n" for x in lines)

    def close(self) -> None:
        with self._lock:
            self._file.close()


_OURS = "motioncast_run_log"


def _capture_forwarded(path: Path) -> Callable[[], None] | None:
    """Send what Ray forwards to the driver to the file at ``path`` instead of stdout/stderr;
    the undo, or None where this Ray has no such hook.

    Ray prints it with ``ray._private.worker.print_to_stdstream``: from the log thread, through
    the handler that ``ray.init`` installs ("ray_print_logs", bound to the function at that
    time), and from the thread that prints the errors published for the job. Both are pointed
    at the file: the function now (and so a later ``ray.init``'s handler) and the handler of a
    Ray already up."""
    try:
        import ray._private.worker as ray_worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

        printer = ray_worker.print_to_stdstream
        sink = _OutputFile(path, ray_worker.filter_autoscaler_events)
    except (ImportError, AttributeError):
        return None
    saved = [pair for pair in dispatcher.handlers if pair[0] == "ray_print_logs"]
    dispatcher.remove_handler("ray_print_logs")
    if saved:
        dispatcher.add_handler(_OURS, sink.write)
    ray_worker.print_to_stdstream = sink.write

    def undo() -> None:
        ray_worker.print_to_stdstream = printer
        dispatcher.remove_handler(_OURS)
        for name, handler in list(dispatcher.handlers):  # a Ray started in the block, still up
            if getattr(handler, "func", None) == sink.write:
                dispatcher.remove_handler(name)
                dispatcher.add_handler(name, functools.partial(printer, **handler.keywords))
        if saved and ray.is_initialized():  # else its shutdown removed it (its init adds one)
            for name, handler in saved:
                dispatcher.add_handler(name, handler)
        sink.close()

    return undo


@dataclass(frozen=True)
class RunLogs:
    folder: Path

    @property
    def driver(self) -> Path:
        return self.folder / DRIVER_LOG

    @property
    def workers(self) -> Path:
        return self.folder / WORKERS_LOG


@contextmanager
def ray_logs(run_dir: Path) -> Iterator[RunLogs]:
    """While in the block, Ray's driver logs and its processes' output go to RUN/ray-logs/
    (appended: a continued run adds to them); an exception leaving the block is written there
    with its traceback. Enter it before ``ray.init``, so that Ray's start-up lines go there too;
    shut down a Ray instance of the run's own inside it, so that its last lines do as well."""
    logs = RunLogs(run_dir / LOG_DIR)
    logs.folder.mkdir(parents=True, exist_ok=True)
    file_handler = _PlainFileHandler(logs.driver)  # ray.init sets Ray's format on it
    file_handler.setFormatter(
        logging.Formatter("%(asctime)s\t%(levelname)s %(name)s -- %(message)s")
    )
    ray_logger = logging.getLogger("ray")
    ray_saved = ray_logger.handlers[:], ray_logger.propagate
    ray_logger.handlers = [file_handler]
    ray_logger.propagate = False
    ours = logging.getLogger("pipelines")
    ours.addHandler(file_handler)
    undo = _capture_forwarded(logs.workers)
    log.info("Ray's logs and the workers' output: %s", logs.folder)
    if undo is None:
        log.warning("this Ray version has no hook for the workers' output: Ray prints it")
    try:
        yield logs
    except BaseException:  # the traceback to the file only; the caller tells the user
        file_handler.handle(
            logging.LogRecord(
                __name__, logging.ERROR, __file__, 0, "run failed", (), sys.exc_info()
            )
        )
        raise
    finally:
        if undo is not None:
            undo()
        ours.removeHandler(file_handler)
        ray_logger.handlers, ray_logger.propagate = ray_saved
        file_handler.close()
