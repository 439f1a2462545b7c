"""The whole system on this machine: ``motioncast up``, ``down`` and ``status``.

``up`` starts a supervisor (``flows.supervise``) in a session of its own, which starts and
keeps running (restarting with backoff, logged) Prefect's server (SQLite under ``system.home``,
127.0.0.1), ``flows.serving`` (Ray, the forecast service, and the scheduled flows served to that
server) and with ``--simulate`` the synthetic network. ``up`` returns once all of them answer;
on any failure or interrupt before that it stops what it started and says why in one line.
The supervisor records each process by identity (pid, start time, command line) in
``<home>/state.json``; ``down`` and ``status`` act only on processes that are still those (a
stale record names nobody). Logs are in ``<home>/logs``. ``up`` and ``down`` hold a lock on
the home folder, so two of them never interleave.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import pandas as pd

from flows import CYCLE, serving, supervise
from flows.supervise import PLAN, STATE, Child, Identity, identify, spawn, stop
from pipelines.config import MotioncastConfig
from pipelines.localfiles import LockBusy, exclusive, write_json
from pipelines.simulate.clock import SimClock

CLOCK = "clock.json"
LOCK = ".lock"
SIM_RADARS = 2  # the synthetic network of --simulate, as 'make demo' simulates it
DEPLOYMENT = f"{CYCLE}/{CYCLE}"  # flow/deployment of the cycle: served once it is registered


class LocalSystemError(RuntimeError):
    """The system cannot be started or stopped; the message says why in one line."""


def _state_path(cfg: MotioncastConfig) -> Path:
    return cfg.system.home / STATE


def read_state(cfg: MotioncastConfig) -> dict | None:
    path = _state_path(cfg)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:
        raise LocalSystemError(f"{path}: unreadable state ({exc}): remove it") from None


def _supervisor_runs(state: dict | None) -> bool:
    return state is not None and identify(Identity.from_dict(state["supervisor"])) == "ours"


@contextlib.contextmanager
def _locked(cfg: MotioncastConfig) -> Iterator[None]:
    """One ``up`` or ``down`` at a time on a home folder (the second refused, not waiting)."""
    cfg.system.home.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(cfg.system.home / LOCK, timeout_s=0):
            yield
    except LockBusy:
        raise LocalSystemError(
            f"another 'motioncast up' or 'down' is running on {cfg.system.home}"
        ) from None


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _port_free(port: int, what: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a
        try:  # closed connection's TIME_WAIT does not count, a listener does
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise LocalSystemError(f"port {port} ({what}) is in use by another program") from None


def _tail(log: Path) -> str:
    return " ".join(log.read_text().strip().splitlines()[-1:]) if log.exists() else ""


@dataclass(frozen=True)
class Simulation:
    """``up --simulate``: the synthetic network writes into the inbox on an accelerated clock."""

    start: pd.Timestamp  # first volumes' time
    speed: float  # simulated seconds per second
    backlog_minutes: int  # written at once, so that the first cycle has its input window
    minutes: int  # how long the network runs (simulated)


def up(
    cfg: MotioncastConfig,
    config_file: Path | None,
    overrides: list[str],
    simulation: Simulation | None = None,
) -> dict:
    """Start the supervised system (and with ``simulation`` the synthetic network); its
    addresses and processes, once every part answers. On any failure or interrupt, what was
    started is stopped and LocalSystemError says why."""
    with _locked(cfg):
        state = read_state(cfg)
        if _supervisor_runs(state):
            raise LocalSystemError(f"already up ({_state_path(cfg)}): run 'motioncast down' first")
        if state is not None:  # a stale record (a crash, a reboot): nothing of it runs
            _state_path(cfg).unlink()
        _port_free(cfg.system.prefect_port, "system.prefect_port")
        _port_free(cfg.serve.port, "serve.port")
        home = cfg.system.home.resolve()
        plan = _plan(cfg, home, config_file, overrides, simulation)
        write_json(home / PLAN, plan)
        me = None
        try:
            supervisor, me = spawn(
                [sys.executable, "-m", supervise.__name__, str(home)],
                home / "logs" / "supervisor.log",
            )
            return _wait_until_up(cfg, plan["info"], supervisor, home)
        except BaseException as exc:  # a failure, or Ctrl-C: nothing is left running
            _stop_all(cfg, me)
            _state_path(cfg).unlink(missing_ok=True)
            if isinstance(exc, LocalSystemError):
                raise
            if isinstance(exc, KeyboardInterrupt):
                raise LocalSystemError("interrupted: everything started was stopped") from None
            raise LocalSystemError(f"up failed ({type(exc).__name__}: {exc}): stopped") from None


def _wait_until_up(
    cfg: MotioncastConfig, info: dict, supervisor: subprocess.Popen, home: Path
) -> dict:
    logs = home / "logs"
    checks = [
        (f"{info['prefect_api']}/health", "Prefect's server", "prefect-server"),
        (f"{info['service']}/healthz", "The forecast service", "system"),
        (
            f"{info['prefect_api']}/deployments/name/{CYCLE}/{CYCLE}",
            "The scheduled flows",
            "system",
        ),
    ]
    for url, what, child in checks:
        log = f"{child}.log"
        deadline = time.monotonic() + cfg.system.start_timeout_seconds
        while not _answers(url):
            if supervisor.poll() is not None:
                raise LocalSystemError(
                    f"the supervisor exited ({supervisor.returncode}): "
                    f"{_tail(logs / 'supervisor.log')} ({logs})"
                )
            state = read_state(cfg) or {}
            if state.get("restarts", {}).get(child, 0):
                raise LocalSystemError(
                    f"{what} exited at start: {_tail(logs / log)} ({logs / log})"
                )
            if time.monotonic() > deadline:
                raise LocalSystemError(
                    f"{what} did not answer at {url} within "
                    f"{cfg.system.start_timeout_seconds:g} s ({logs / log})"
                )
            time.sleep(0.5)
    return read_state(cfg)


def _plan(
    cfg: MotioncastConfig,
    home: Path,
    config_file: Path | None,
    overrides: list[str],
    simulation: Simulation | None,
) -> dict:
    """What the supervisor runs, and what ``up`` reports."""
    prefect_api = f"http://127.0.0.1:{cfg.system.prefect_port}/api"
    env = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": prefect_api,
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
    }
    logs = home / "logs"
    server = Child(
        "prefect-server",
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        + ["--port", str(cfg.system.prefect_port), "--analytics-off"],
        {k: v for k, v in env.items() if k != "PREFECT_API_URL"},
        ["PREFECT_API_URL"],
        str(logs / "prefect-server.log"),
    )
    settings = [a for item in overrides for a in ("--set", item)]
    clock, simulator = None, []
    if simulation is not None:
        config_file = _network_config(cfg, config_file, home)
        clock = SimClock.starting(
            simulation.start + pd.Timedelta(minutes=simulation.backlog_minutes),
            simulation.speed,
        ).save(home / CLOCK)
        settings += ["--set", f"system.inbox={cfg.system.inbox.resolve()}"]
        simulator = [
            Child(
                "simulator",
                [sys.executable, "-m", "pipelines.cli", "simulate", "--radars", str(SIM_RADARS)]
                + ["--out", str(cfg.system.inbox.resolve())]
                + ["--start", simulation.start.isoformat(), "--minutes", str(simulation.minutes)]
                + ["--clock", str(clock), "--network-dir", str(home)]
                + ["--config", str(config_file), *settings],
                env,
                [],
                str(logs / "simulator.log"),
            )
        ]
        settings += ["--clock", str(clock)]
    argv = [sys.executable, "-m", serving.__name__, *settings]
    if config_file is not None:
        argv += ["--config", str(Path(config_file).resolve())]
    # started in this order (the flows need the server), stopped in the reverse one
    children = [server, Child("system", argv, env, [], str(logs / "system.log")), *simulator]
    info = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prefect_api": prefect_api,
        "prefect_ui": prefect_api.removesuffix("/api"),
        "service": cfg.serve.client_url(),
        "archive": cfg.stores.archive.location,
        "forecasts": cfg.stores.forecasts.location,
        "registry": str(cfg.forecast.registry),
        "inbox": str(cfg.system.inbox),
        "logs": str(logs),
        "clock": str(clock) if clock is not None else None,
    }
    return {
        "children": [asdict(c) for c in children],
        "restart_max_seconds": cfg.system.restart_max_seconds,
        "stop_seconds": cfg.system.stop_seconds,
        "info": info,
    }


def _network_config(cfg: MotioncastConfig, config_file: Path | None, home: Path) -> Path:
    """The configuration of the synthetic network's mosaic domain (the simulation's)."""
    from pipelines.simulate.network import write_network_config

    if config_file is not None:
        raise LocalSystemError(
            "--simulate runs on the synthetic network's own configuration: give --set, not --config"
        )
    return write_network_config(home, cfg.simulate.radars[:SIM_RADARS], cfg.simulate)


def _stop_all(cfg: MotioncastConfig, supervisor: Identity | None) -> list[str]:
    """Stop the supervisor (which stops its children in order), then any child it left (a
    supervisor killed with SIGKILL); only processes that are still ours. What ran, in the order
    it was started."""
    children = (read_state(cfg) or {}).get("processes", {})
    ran = [n for n, r in children.items() if identify(Identity.from_dict(r)) == "ours"]
    wait_s = cfg.system.stop_seconds
    if supervisor is not None:
        stop(supervisor, len(children) * wait_s + 10)
    for record in children.values():
        stop(Identity.from_dict(record), wait_s)
    return ran


def down(cfg: MotioncastConfig) -> list[str]:
    """Stop what ``up`` started: the children the supervisor ran (as recorded) and it."""
    with _locked(cfg):
        state = read_state(cfg)
        if state is None:
            return []
        ran = _stop_all(cfg, Identity.from_dict(state["supervisor"]))
        _state_path(cfg).unlink(missing_ok=True)
    return ran[::-1]  # in the order they were stopped


def status(cfg: MotioncastConfig, last: int = 5) -> dict:
    """What runs (processes that are still ours, whether the service and Prefect answer,
    restarts) and the last forecasts."""
    from pipelines.forecast.store import ForecastStore, ForecastStoreError

    state = read_state(cfg)
    out: dict = {"up": _supervisor_runs(state)}
    if state is not None:
        out["processes"] = {
            n: identify(Identity.from_dict(r)) == "ours" for n, r in state["processes"].items()
        }
        out["restarts"] = state.get("restarts", {})
        out["service_answers"] = _answers(f"{state['service']}/healthz")
        out["prefect_answers"] = _answers(f"{state['prefect_api']}/health")
        out.update({k: state[k] for k in ("service", "prefect_ui", "logs")})
        if state.get("clock"):
            out["simulated_time"] = SimClock.load(state["clock"]).now().isoformat()
    try:
        history = ForecastStore.from_config(cfg.stores).history()
        out["last_forecasts"] = [
            {"at": str(at)[:19], "what": message}
            for _, message, at in history
            if message.startswith("forecast ")
        ][:last]
    except ForecastStoreError:
        out["last_forecasts"] = []
    return out
