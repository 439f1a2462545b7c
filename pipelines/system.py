"""The whole system on this machine: ``motioncast up``, ``down`` and ``status``.

Two background processes, each in its own session (so that ``down`` stops it with everything it
started): Prefect's server (SQLite under ``system.home``, 127.0.0.1) and ``flows.system`` (Ray,
the forecast service, and the scheduled flows served to that server). ``up`` waits until both
answer, then records them in ``<home>/state.json``; their logs are in ``<home>/logs``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

from pipelines.config import MotioncastConfig
from pipelines.simulate.clock import SimClock

STATE = "state.json"
CLOCK = "clock.json"
SIM_RADARS = 2  # the synthetic network of --simulate, as 'make demo' simulates it
CYCLE = "forecast-cycle/forecast-cycle"  # flow/deployment: served once it is registered
STOP_WAIT_S = 60.0  # SIGTERM, then this long before SIGKILL


class LocalSystemError(RuntimeError):
    """The system cannot be started or stopped; the message says why in one line."""


def _state_path(cfg: MotioncastConfig) -> Path:
    return cfg.system.home / STATE


def read_state(cfg: MotioncastConfig) -> dict | None:
    path = _state_path(cfg)
    return json.loads(path.read_text()) if path.exists() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(url: str, process: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if process.poll() is not None:
            tail = " ".join(log.read_text().strip().splitlines()[-1:]) if log.exists() else ""
            raise LocalSystemError(f"{what} exited ({process.returncode}): {tail} ({log})")
        if time.monotonic() > deadline:
            raise LocalSystemError(f"{what} did not answer at {url} within {timeout:g} s ({log})")
        time.sleep(0.5)


def _spawn(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


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
    """Start Prefect's server and the system process (and with ``simulation`` the synthetic
    network); their addresses and pids."""
    state = read_state(cfg)
    if state is not None and any(_alive(p["pid"]) for p in state["processes"].values()):
        raise LocalSystemError(f"already up ({_state_path(cfg)}): run 'motioncast down' first")
    home = cfg.system.home.resolve()
    prefect_api = f"http://127.0.0.1:{cfg.system.prefect_port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": prefect_api,
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
    }
    logs = home / "logs"
    server = _spawn(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        + ["--port", str(cfg.system.prefect_port), "--analytics-off"],
        {k: v for k, v in env.items() if k != "PREFECT_API_URL"},
        logs / "prefect-server.log",
    )
    try:
        _wait(
            f"{prefect_api}/health",
            server,
            logs / "prefect-server.log",
            cfg.system.start_timeout_seconds,
            "Prefect's server",
        )
        processes = {"prefect-server": server}
        settings = [a for item in overrides for a in ("--set", item)]
        if simulation is not None:
            config_file = _network_config(cfg, config_file, home)
            clock = SimClock.starting(
                simulation.start + pd.Timedelta(minutes=simulation.backlog_minutes),
                simulation.speed,
            ).save(home / CLOCK)
            settings += ["--set", f"system.inbox={cfg.system.inbox.resolve()}"]
            processes["simulator"] = _spawn(
                [sys.executable, "-m", "pipelines.cli", "simulate", "--radars", str(SIM_RADARS)]
                + ["--out", str(cfg.system.inbox.resolve())]
                + ["--start", simulation.start.isoformat(), "--minutes", str(simulation.minutes)]
                + ["--clock", str(clock)]
                + ["--network-dir", str(home), "--config", str(config_file), *settings],
                env,
                logs / "simulator.log",
            )
            settings += ["--clock", str(clock)]
        argv = [sys.executable, "-m", "flows.system", *settings]
        if config_file is not None:
            argv += ["--config", str(Path(config_file).resolve())]
        system = _spawn(argv, env, logs / "system.log")
        processes["system"] = system
        for url, what in (
            (f"{cfg.serve.client_url()}/healthz", "The forecast service"),
            (f"{prefect_api}/deployments/name/{CYCLE}", "The scheduled flows"),
        ):
            _wait(url, system, logs / "system.log", cfg.system.start_timeout_seconds, what)
    except LocalSystemError:
        for process in processes.values():
            _stop_group(process.pid)
        raise
    state = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prefect_api": prefect_api,
        "prefect_ui": prefect_api.removesuffix("/api"),
        "service": cfg.serve.client_url(),
        "archive": cfg.store.archive,
        "forecasts": cfg.forecast.store,
        "registry": str(cfg.forecast.registry),
        "inbox": str(cfg.system.inbox),
        "logs": str(logs),
        "processes": {name: {"pid": p.pid} for name, p in processes.items()},
        "clock": str(home / CLOCK) if simulation is not None else None,
    }
    home.mkdir(parents=True, exist_ok=True)
    _state_path(cfg).write_text(json.dumps(state, indent=1))
    return state


def _network_config(cfg: MotioncastConfig, config_file: Path | None, home: Path) -> Path:
    """The configuration of the synthetic network's mosaic domain (the simulation's)."""
    from pipelines.simulate.network import write_network_config

    if config_file is not None:
        raise LocalSystemError(
            "--simulate runs on the synthetic network's own configuration: give --set, not --config"
        )
    return write_network_config(home, cfg.simulate.radars[:SIM_RADARS], cfg.simulate)


def _stop_group(pid: int) -> bool:
    """SIGTERM to the process group led by ``pid``, SIGKILL if it outlives STOP_WAIT_S; whether
    it was running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.25)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def down(cfg: MotioncastConfig) -> list[str]:
    """Stop what ``up`` started (the system process first, then Prefect's server)."""
    state = read_state(cfg)
    if state is None:
        return []
    stopped = []
    for name in ("simulator", "system", "prefect-server"):
        if name in state["processes"] and _stop_group(state["processes"][name]["pid"]):
            stopped.append(name)
    _state_path(cfg).unlink()
    return stopped


def status(cfg: MotioncastConfig, last: int = 5) -> dict:
    """What runs (processes, whether the service and Prefect answer) and the last forecasts."""
    from pipelines.forecast.store import ForecastStore, ForecastStoreError

    state = read_state(cfg)
    out: dict = {"up": state is not None}
    if state is not None:
        out["processes"] = {n: _alive(p["pid"]) for n, p in state["processes"].items()}
        out["service_answers"] = _answers(f"{state['service']}/healthz")
        out["prefect_answers"] = _answers(f"{state['prefect_api']}/health")
        out.update({k: state[k] for k in ("service", "prefect_ui", "logs")})
        if state.get("clock"):
            out["simulated_time"] = SimClock.load(state["clock"]).now().isoformat()
    try:
        history = ForecastStore(cfg.forecast.store, storage=cfg.store.object_storage).history()
        out["last_forecasts"] = [
            {"at": str(at)[:19], "what": message}
            for _, message, at in history
            if message.startswith("forecast ")
        ][:last]
    except ForecastStoreError:
        out["last_forecasts"] = []
    return out
