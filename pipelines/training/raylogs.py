"""A quiet driver: what Ray would print in the driver goes to the run folder.

``ray_logs(run_dir)`` sends it to ``RUN/ray-logs/``:

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

log = logging.getLogger(__name__)

LOG_DIR = "ray-logs"
DRIVER_LOG = "driver.log"
WORKERS_LOG = "workers.log"


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
