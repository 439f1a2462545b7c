"""A supervisor of the local system's processes (``motioncast up``), and the one way this package
tells its own processes from any other.

    python -m flows.supervise HOME      # runs the plan HOME/plan.json until SIGTERM

The plan names each child (argv, extra environment, log file). The supervisor starts them in
order, each in a session of its own, restarts one that exits (after 1 s, doubling up to the
plan's ``restart_max_seconds``, reset once it has run that long), one log line per event, and on
SIGTERM stops them in reverse order. It records itself and each child in HOME/state.json
(atomically replaced) by identity, not by pid alone: a pid, the process's start time and its
command line. A recorded process whose pid now belongs to another process (after a reboot, a
crash) is never signalled: ``identify`` says "other".
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import psutil

from pipelines.localfiles import write_json

log = logging.getLogger("motioncast.supervise")

PLAN = "plan.json"
STATE = "state.json"
POLL_S = 0.5


@dataclass(frozen=True)
class Identity:
    """A process as started: its pid (the leader of its own process group), start time and
    command line."""

    pid: int
    started: float  # psutil's create_time, seconds since the epoch
    argv: tuple[str, ...]

    @classmethod
    def started_as(cls, pid: int, argv: list[str]) -> Identity:
        """The process just started with ``argv`` (its command line may not show it yet: the
        exec can still be under way; its start time is the fork's)."""
        return cls(pid, psutil.Process(pid).create_time(), tuple(argv))

    @classmethod
    def from_dict(cls, d: dict) -> Identity:
        return cls(int(d["pid"]), float(d["started"]), tuple(d["argv"]))


EXEC_SETTLE_S = 1.0  # the longest a just-started process may show no command line yet


def _command_line(process: psutil.Process) -> tuple[str, ...]:
    """The process's command line; a process caught in its exec (Linux closes the exec
    pipe, so that Popen returns, before the new program's arguments are mapped: an empty
    command line for a moment, longer on a loaded machine) is asked again until it shows one."""
    deadline = time.monotonic() + EXEC_SETTLE_S
    argv = tuple(process.cmdline())
    while not argv and time.monotonic() < deadline:
        time.sleep(0.01)
        argv = tuple(process.cmdline())
    return argv


def identify(who: Identity) -> Literal["ours", "gone", "other"]:
    """'ours': that process runs; 'gone': it exited (its group may hold what it left running);
    'other': the pid is another process's now (never signal it or its group)."""
    try:
        process = psutil.Process(who.pid)
        same = abs(process.create_time() - who.started) < 0.05 and (
            _command_line(process) == who.argv
        )
        if process.status() == psutil.STATUS_ZOMBIE:
            return "gone" if same else "other"
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.AccessDenied:  # another user's process
        return "other"
    return "ours" if same else "other"


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group runs (a child of ours that exited is reaped first:
    a zombie still counts as a member of its group)."""
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:  # not our child, or reaped already
        pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(who: Identity, wait_s: float) -> bool:
    """Stop a process we started and its process group: SIGTERM to it alone (so that it shuts
    down what it started in order), then SIGTERM and, after ``wait_s``, SIGKILL to whatever is
    left in its group. Nothing when the pid is another process's. Whether anything ran."""
    found = identify(who)
    if found == "other":
        log.warning("pid %d is no longer ours (%s ...): not signalled", who.pid, who.argv[:2])
        return False
    if found == "gone" and not _group_alive(who.pid):
        return False
    deadline = time.monotonic() + wait_s
    if found == "ours":
        os.kill(who.pid, signal.SIGTERM)
        while _group_alive(who.pid) and identify(who) == "ours" and time.monotonic() < deadline:
            time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(who.pid, sig)  # the leader exited or is ours: the group is ours
        except ProcessLookupError:
            return True
        while _group_alive(who.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        deadline = time.monotonic() + 5.0
    return True


def spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, Identity]:
    """Start ``argv`` in a session of its own (its output appended to ``log``), and who it is."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return process, Identity.started_as(process.pid, argv)


@dataclass(frozen=True)
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]  # added to the supervisor's environment (never secrets: it is stored)
    unset: list[str]  # removed from it
    log: str


class Supervisor:
    def __init__(self, home: Path):
        plan = json.loads((home / PLAN).read_text())
        self.home = home
        self.children = [Child(**c) for c in plan["children"]]
        self.restart_max_s = float(plan["restart_max_seconds"])
        self.stop_s = float(plan["stop_seconds"])
        self.info = plan["info"]
        self.me = Identity.started_as(os.getpid(), psutil.Process().cmdline())
        self.running: dict[str, tuple[subprocess.Popen, Identity, float]] = {}
        self.restarts = {c.name: 0 for c in self.children}
        self.backoff = {c.name: 1.0 for c in self.children}  # seconds before the next restart
        self.next_try: dict[str, float] = {}  # name -> when it is started again
        self.stopping = False

    def _start(self, child: Child) -> None:
        env = {k: v for k, v in os.environ.items() if k not in child.unset} | child.env
        process, who = spawn(child.argv, Path(child.log), env)
        self.running[child.name] = (process, who, time.monotonic())
        log.info("%s started (pid %d)", child.name, process.pid)
        self._record()

    def _record(self) -> None:
        write_json(
            self.home / STATE,
            {
                **self.info,
                "supervisor": asdict(self.me),
                "processes": {n: asdict(who) for n, (_, who, _) in self.running.items()},
                "restarts": self.restarts,
            },
        )

    def _check(self, child: Child) -> None:
        """Restart ``child`` when it has exited and its wait is over."""
        now = time.monotonic()
        if child.name in self.next_try:
            if now >= self.next_try[child.name]:
                del self.next_try[child.name]
                self.restarts[child.name] += 1
                self._start(child)
            return
        process, who, since = self.running[child.name]
        code = process.poll()
        if code is None:
            return
        stop(who, self.stop_s)  # what it left in its group (Ray's processes, a bound port)
        ran = now - since
        if ran >= self.restart_max_s:  # it had run well: start again from the shortest wait
            self.backoff[child.name] = 1.0
        wait_s = self.backoff[child.name]
        self.backoff[child.name] = min(self.restart_max_s, 2 * wait_s)
        log.warning(
            "%s exited (%s) after %.0f s; restart %d in %.0f s",
            child.name, code, ran, self.restarts[child.name] + 1, wait_s,
        )  # fmt: skip
        self.next_try[child.name] = now + wait_s

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        for child in self.children:
            self._start(child)
        while not self.stopping:
            for child in self.children:
                if not self.stopping:
                    self._check(child)
            time.sleep(POLL_S)
        for child in reversed(self.children):
            if child.name in self.running:
                _, who, _ = self.running[child.name]
                stop(who, self.stop_s)
                log.info("%s stopped", child.name)
        log.info("supervisor stopped")

    def _on_term(self, signum, frame) -> None:
        self.stopping = True


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    (home,) = argv if argv is not None else sys.argv[1:]
    Supervisor(Path(home)).run()


if __name__ == "__main__":
    main()
