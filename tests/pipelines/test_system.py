"""motioncast up / status / down for real: Prefect's server, Ray, the Serve app, served flows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from pipelines.forecast.store import open_forecasts
from tests.conftest import free_port, motioncast, promoted_registry

pytestmark = pytest.mark.slow


def test_up_runs_a_cycle_from_its_deployment_status_shows_it_and_down_stops_all(
    truth_archive: Path, tmp_path: Path
):
    settings = [
        f"system.home={tmp_path / 'home'}",
        f"system.prefect_port={free_port()}",
        f"system.inbox={tmp_path / 'inbox'}",
        "system.ray_cpus=2",
        f"stores.archive.location={truth_archive}",
        f"stores.forecasts.location={tmp_path / 'forecasts'}",
        f"forecast.registry={promoted_registry(tmp_path)}",
        "forecast.max_input_age_minutes=4",  # only the newest window is due at 06:01
        f"serve.port={free_port()}",
    ]
    args = [a for s in settings for a in ("--set", s)]
    try:
        started = motioncast("up", *args)
        assert started.returncode == 0, started.stderr + started.stdout
        assert "motioncast is up" in started.stdout and "prefect_ui" in started.stdout
        state = json.loads((tmp_path / "home" / "state.json").read_text())
        assert httpx.get(f"{state['service']}/healthz").json()["model_version"] == "v0001"
        said = (tmp_path / "home" / "logs" / "system.log").read_text()
        ray_dir = Path(re.search(r"Ray's session \(its own logs\) in (\S+)", said).group(1))
        assert ray_dir.is_dir()
        again = motioncast("up", *args)
        assert again.returncode == 1 and "already up" in again.stderr

        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: state["prefect_api"]}):
            run = run_deployment(
                "forecast-cycle/forecast-cycle",
                parameters={"now": "2026-06-01T06:01"},
                timeout=240,
                poll_interval=1,
            )
        assert run.state.is_completed(), run.state
        ds = open_forecasts(tmp_path / "forecasts", "syn")
        assert ds.method.values.tolist() == ["motionrnn"]
        shown = json.loads(motioncast("status", "--json", *args).stdout)
        assert shown["up"] and all(shown["processes"].values()) and shown["service_answers"]
        assert shown["last_forecasts"][0]["what"] == (
            "forecast syn 2026-06-01T06:00:00 motionrnn v0001"
        )
    finally:
        stopped = motioncast("down", *args)
    assert stopped.returncode == 0 and "stopped: system, prefect-server" in stopped.stderr
    for url in (state["service"] + "/healthz", state["prefect_api"] + "/health"):
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, timeout=2)
    assert json.loads(motioncast("status", "--json", *args).stdout)["up"] is False
    assert not ray_dir.exists()  # 'up' after 'up' does not fill /tmp


def test_ctrl_c_during_up_stops_everything_started_so_far(tmp_path: Path):
    """Reproduced defect: Ctrl-C during up's waits orphaned every process started so far."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from tests.conftest import REPO

    home = tmp_path / "home"
    port = free_port()
    settings = [f"system.home={home}", f"system.prefect_port={port}", f"serve.port={free_port()}"]
    argv = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "up",
        *[a for s in settings for a in ("--set", s)],
    ]
    started = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (home / "state.json").exists():  # the supervisor has started its children
        assert time.monotonic() < deadline
        time.sleep(0.2)
    started.send_signal(signal.SIGINT)
    out, err = started.communicate(timeout=120)
    assert started.returncode == 1
    assert "interrupted: everything started was stopped" in err.decode()
    leftovers = [
        " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
        or f"--port {port}" in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
