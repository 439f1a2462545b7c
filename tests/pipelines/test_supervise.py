"""The supervisor of 'motioncast up' and the identity rule of up/down/status, with real
processes: a stale record never makes a process that is not ours look running or get signalled,
a child that dies is restarted with backoff, SIGTERM stops every child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flows.local import LocalSystemError, down, status, up
from flows.supervise import PLAN, STATE, Identity, identify, stop
from pipelines.config import load_config
from pipelines.localfiles import write_json

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]


def _sentinel() -> subprocess.Popen:
    """A process of its own session that this package did not start (``setsid sleep``)."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def _wait(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _stale_state(home: Path, pid: int) -> None:
    """A state file as 'up' left it, whose pids now belong to ``pid`` (a reboot, a crash)."""
    home.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "started": 1.0e9, "argv": SLEEPER}
    (home / STATE).write_text(
        json.dumps(
            {
                "supervisor": record,
                "processes": {"system": record, "prefect-server": record},
                "service": "http://127.0.0.1:9",
                "prefect_api": "http://127.0.0.1:9/api",
                "prefect_ui": "http://127.0.0.1:9",
                "logs": str(home / "logs"),
            }
        )
    )


def test_a_stale_state_names_nobody_status_down_and_up_leave_that_process_alone(tmp_path: Path):
    """Reproduced defect: the pid of a `setsid sleep` in the state file: status said running
    and down killed its process group."""
    sentinel = _sentinel()
    try:
        home = tmp_path / "home"
        _stale_state(home, sentinel.pid)
        cfg = load_config(
            None, [f"system.home={home}", f"stores.forecasts.location={tmp_path / 'f'}"]
        )
        assert identify(
            Identity.from_dict(json.loads((home / STATE).read_text())["supervisor"])
        ) == ("other")
        shown = status(cfg)
        assert shown["up"] is False and shown["processes"] == {
            "system": False, "prefect-server": False
        }  # fmt: skip
        assert down(cfg) == []
        assert sentinel.poll() is None  # alive: never signalled
        assert not (home / STATE).exists()
        # pid 1 (another program, and with a user other than root another user's): 'other'
        assert identify(Identity(1, 1.0e9, tuple(SLEEPER))) == "other"
    finally:
        sentinel.kill()


def test_stop_signals_only_what_is_still_ours(tmp_path: Path):
    ours = subprocess.Popen(SLEEPER, start_new_session=True)
    who = Identity.started_as(ours.pid, SLEEPER)
    assert identify(who) == "ours"
    impostor = Identity(ours.pid, who.started + 5.0, who.argv)  # same pid, another start
    assert identify(impostor) == "other" and stop(impostor, 1.0) is False
    assert ours.poll() is None
    started = time.monotonic()
    assert stop(who, 5.0) is True
    assert time.monotonic() - started < 3.0  # SIGTERM is enough: no wait for SIGKILL
    assert ours.poll() is not None
    assert identify(who) == "gone" and stop(who, 1.0) is False


def test_a_process_caught_in_its_exec_is_still_ours(monkeypatch):
    """Right after Popen a process may show no command line yet (Linux maps the new program's
    arguments after closing the exec pipe that Popen waits on; seen on a loaded machine): it is
    asked again, not taken for another process."""
    import psutil

    ours = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        who = Identity.started_as(ours.pid, SLEEPER)
        real, calls = psutil.Process.cmdline, []

        def in_exec(process):
            calls.append(process.pid)
            return [] if len(calls) < 3 else real(process)

        monkeypatch.setattr(psutil.Process, "cmdline", in_exec)
        assert identify(who) == "ours" and len(calls) == 3
    finally:
        ours.kill()
        ours.wait()


def _supervise(home: Path, children: list[dict]) -> tuple[subprocess.Popen, list[str]]:
    home.mkdir(parents=True, exist_ok=True)
    plan = {
        "children": children,
        "restart_max_seconds": 4.0,
        "stop_seconds": 5.0,
        "info": {"service": "http://127.0.0.1:9"},
    }
    write_json(home / PLAN, plan)
    argv = [sys.executable, "-m", "flows.supervise", str(home)]
    log = open(home / "supervisor.log", "ab")
    return subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    ), argv


def _child(name: str, home: Path, argv=SLEEPER) -> dict:
    return {"name": name, "argv": argv, "env": {}, "unset": [], "log": str(home / f"{name}.log")}


def _state(home: Path) -> dict:
    try:
        return json.loads((home / STATE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_the_supervisor_restarts_a_child_that_dies_with_backoff_and_stops_all_on_sigterm(
    tmp_path: Path,
):
    home = tmp_path / "home"
    sentinel = _sentinel()
    crashing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    supervisor, _ = _supervise(home, [_child("server", home), _child("crashy", home, crashing)])
    try:
        _wait(lambda: "server" in _state(home).get("processes", {}))
        first = _state(home)["processes"]["server"]["pid"]
        os.kill(first, signal.SIGKILL)
        _wait(lambda: _state(home)["processes"]["server"]["pid"] != first)
        assert _state(home)["restarts"]["server"] == 1
        second = Identity.from_dict(_state(home)["processes"]["server"])
        assert identify(second) == "ours"
        # a child that keeps failing: restarts spaced 1, 2, 4, 4 s (restart_max_seconds 4)
        time.sleep(6.0)
        assert 2 <= _state(home)["restarts"]["crashy"] <= 4
        log = (home / "supervisor.log").read_text()
        assert "server exited (-9)" in log and "restart 1 in 1 s" in log
        assert "crashy exited (3)" in log and "restart 2 in 2 s" in log
        assert "restart 3 in 4 s" in log
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
    assert identify(second) == "gone"
    assert sentinel.poll() is None  # never signalled
    sentinel.kill()


def test_a_failed_up_stops_what_it_started_and_says_why_in_one_line(tmp_path: Path):
    """Reproduced defect: Prefect's server did not answer in time, up died with
    UnboundLocalError and the server kept running. Here the start timeout is too short."""
    import socket

    home = tmp_path / "home"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    base = [f"system.home={home}", f"stores.forecasts.location={tmp_path / 'f'}"]
    cfg = load_config(None, [*base, f"system.prefect_port={port}"])
    with pytest.raises(LocalSystemError, match=f"port {port} .system.prefect_port. is in use"):
        up(cfg, None, [])
    taken.close()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    cfg = load_config(
        None, [*base, f"system.prefect_port={port}", "system.start_timeout_seconds=0.5"]
    )
    with pytest.raises(LocalSystemError) as failed:
        up(cfg, None, [])
    assert "Prefect's server did not answer" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert not (home / STATE).exists()
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
        or f"--port {port}" in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_what_a_dead_child_left_in_its_group_is_stopped_before_it_is_restarted(tmp_path: Path):
    """A child that dies (OOM, SIGKILL) leaves its own children running in its group (Ray's
    processes holding the service's port): they are stopped before the restart."""
    home = tmp_path / "home"
    leaves = [
        sys.executable, "-c",
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        "open(sys.argv[1], 'a').write(f'{p.pid}\\n'); time.sleep(300)",
        str(home / "grandchildren"),
    ]  # fmt: skip
    supervisor, _ = _supervise(home, [_child("leader", home, leaves)])
    try:
        _wait(lambda: (home / "grandchildren").exists())
        first = int((home / "grandchildren").read_text().split()[0])
        os.kill(_state(home)["processes"]["leader"]["pid"], signal.SIGKILL)
        _wait(lambda: len((home / "grandchildren").read_text().split()) == 2)
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
