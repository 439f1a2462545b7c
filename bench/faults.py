"""Fault drill: the whole system live (``motioncast up --simulate``) under a schedule of faults.

    PYTHONPATH=. .venv/bin/python bench/faults.py [--speed 10] [--minutes 130] [--out DIR]

The synthetic network runs on an accelerated clock (--speed simulated seconds per second) for
--minutes simulated minutes with an untrained MotionRNN promoted (the extrapolation nowcast; its
weights do not matter here). On a schedule of simulated minutes after the start the drill:

- kills the model's Serve replica (SIGKILL),
- kills Prefect's server (SIGKILL; the supervisor of ``up`` brings it back),
- promotes a corrupt model (a registered version whose weights are then overwritten),
- promotes a good one,
- pauses the inbox ingest for 30 simulated minutes, then resumes it,
- runs a second ``motioncast up`` while the first runs,
- hangs the model's replica (SIGSTOP) for 10 simulated minutes (the cycle's deadline passes).

Then ``motioncast down``, and the checks: every issue time that has a complete input window in
the archive has exactly one forecast in the store (one commit each), each fallback carries its
reason, a sentinel process the drill started (``setsid sleep``) was never signalled, nothing
committed was lost (every forecast commit's issue time is in the final store; every volume the
inbox ingest took is in the archive). Prints the table of faults and outcomes and the verdict.
Every request goes to 127.0.0.1; the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
START = pd.Timestamp("2026-06-01T12:00")
BACKLOG_MIN = 30  # 'up --simulate' writes one input window at once
STEP = "5min"  # the synthetic network's volume step, so the cycle's issue step


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _motioncast(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _registry(root: Path) -> tuple[Path, Path, dict]:
    """A registry whose promoted v0001 is an untrained MotionRNN; that checkpoint, its card."""
    from motionrnn import MotionRNN, MotionRNNConfig, save_checkpoint
    from pipelines.config import MotioncastConfig
    from pipelines.registry import Registry

    checkpoint = root / "untrained.safetensors"
    save_checkpoint(checkpoint, MotionRNN(MotionRNNConfig(hidden=8, frames_in=6, frames_out=12)))
    registry = Registry(root / "registry")
    training = MotioncastConfig().training.model_dump(mode="json", exclude={"model"})
    card = {"run": "drill", "training": training, "validation": {"model": {"csi_1mm": 0.1}}}
    registry.promote(registry.register(checkpoint, card).version, force=True)
    return root / "registry", checkpoint, card


class Drill:
    def __init__(self, out: Path, speed: float, minutes: int):
        self.out, self.speed, self.minutes = out, speed, minutes
        self.registry, self.checkpoint, self.card = _registry(out)
        self.settings = [
            f"system.home={out / 'home'}",
            f"system.inbox={out / 'inbox'}",
            f"system.prefect_port={_free_port()}",
            "system.restart_max_seconds=10",
            f"serve.port={_free_port()}",
            "serve.poll_seconds=2",
            "serve.retry_max_seconds=10",
            f"stores.archive.location={out / 'archive'}",
            f"stores.forecasts.location={out / 'forecasts'}",
            f"forecast.registry={self.registry}",
            # issue times an ingest outage of 30 minutes held back are still worth issuing
            "forecast.max_input_age_minutes=60",
            "forecast.deadline_seconds=10",
        ]
        self.args = [a for s in self.settings for a in ("--set", s)]
        self.rows: list[tuple[str, str, str]] = []

    # ---- the system --------------------------------------------------------------------
    def state(self) -> dict:
        return json.loads((self.out / "home" / "state.json").read_text())

    def sim_now(self) -> pd.Timestamp:
        from pipelines.simulate.clock import SimClock

        return SimClock.load(self.out / "home" / "clock.json").now()

    def wait_until(self, when: pd.Timestamp) -> None:
        """Sleep until the simulated clock reaches ``when``."""
        while self.sim_now() < when:
            time.sleep(0.5)

    def wait_sim(self, minutes_after_start: float) -> None:
        self.wait_until(START + pd.Timedelta(minutes=BACKLOG_MIN + minutes_after_start))

    def health(self) -> dict:
        try:
            return httpx.get(f"{self.state()['service']}/healthz", timeout=10).json()
        except (httpx.HTTPError, ValueError) as exc:
            return {"error": type(exc).__name__}

    def forecasts(self) -> pd.DataFrame:
        from pipelines.forecast.store import open_forecasts

        try:
            ds = open_forecasts(self.out / "forecasts", "simnet")
        except Exception:  # no forecast committed yet: an empty table on the same index
            return pd.DataFrame(
                columns=["method", "model_version", "reason"],
                index=pd.DatetimeIndex([], name="issue_time"),
            )
        return ds[["method", "model_version", "reason"]].to_dataframe()

    def poll_forecasts(
        self, done: Callable[[pd.DataFrame], bool], until: pd.Timestamp
    ) -> pd.DataFrame:
        """The forecast table once ``done(table)`` holds, or as it is at simulated ``until``."""
        while True:
            table = self.forecasts()
            if done(table) or self.sim_now() >= until:
                return table
            time.sleep(1.0)

    def next_forecast_after(self, when: pd.Timestamp, timeout_sim_min: float = 30) -> str:
        """The first forecast issued for an issue time after ``when`` (by what), waiting."""
        until = when + pd.Timedelta(minutes=timeout_sim_min)
        table = self.poll_forecasts(lambda t: bool((t.index > when).any()), until)
        later = table[table.index > when]
        if not len(later):
            return f"none within {timeout_sim_min:g} simulated min"
        t, row = later.index[0], later.iloc[0]
        return f"{t:%H:%M} by {row['method']} {row['model_version'] or ''}".strip()

    def record(self, at: pd.Timestamp, fault: str, outcome: str) -> None:
        self.rows.append((f"{at:%H:%M}", fault, outcome))
        print(f"  {at:%H:%M}  {fault}: {outcome}", flush=True)

    def model_replicas(self) -> list[psutil.Process]:
        """The model's Serve replica processes of this system (never another Ray's)."""
        system = psutil.Process(self.state()["processes"]["system"]["pid"])
        return [
            p
            for p in system.children(recursive=True)
            if "ServeReplica:motioncast:ModelServer" in " ".join(p.cmdline())
        ]

    # ---- faults ------------------------------------------------------------------------
    def kill_replica(self) -> None:
        at = self.sim_now()
        replicas = self.model_replicas()
        for p in replicas:
            p.kill()
        self.record(
            at,
            f"model replica killed ({len(replicas)} process)",
            "next forecast " + self.next_forecast_after(at),
        )

    def kill_prefect(self) -> None:
        at = self.sim_now()
        before = self.state()["restarts"]["prefect-server"]
        os.kill(self.state()["processes"]["prefect-server"]["pid"], signal.SIGKILL)
        started = time.monotonic()
        api = self.state()["prefect_api"]
        while self.state()["restarts"]["prefect-server"] == before:
            time.sleep(0.2)
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        back = time.monotonic() - started
        self.record(
            at,
            "Prefect server killed",
            f"restarted by the supervisor, answering after {back:.0f} s; next forecast "
            + self.next_forecast_after(at),
        )

    def promote(self, corrupt: bool) -> None:
        from pipelines.registry import Registry

        at = self.sim_now()
        registry = Registry(self.registry)
        version = registry.register(self.checkpoint, {**self.card, "corrupt": corrupt})
        if corrupt:
            version.checkpoint.write_bytes(b"\x00not safetensors" * 64)
        registry.promote(version.version, force=True)
        time.sleep(8)  # a few polls of the model replica
        health = self.health()
        kind = "corrupt" if corrupt else "good"
        error = f", model_error {health['model_error']!r:.90}" if health.get("model_error") else ""
        self.record(
            at,
            f"{kind} model {version.version} promoted",
            f"in service: {health.get('model_version')}{error}; next forecast "
            + self.next_forecast_after(self.sim_now()),
        )

    def pause_ingest(self, minutes: float) -> None:
        import asyncio

        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def set_paused(paused: bool) -> None:
            async with get_client() as client:
                deployment = await client.read_deployment_by_name("ingest/ingest-inbox")
                if paused:
                    await client.pause_deployment(deployment.id)
                else:
                    await client.resume_deployment(deployment.id)

        at = self.sim_now()
        with temporary_settings(updates={PREFECT_API_URL: self.state()["prefect_api"]}):
            asyncio.run(set_paused(True))
            resume = at + pd.Timedelta(minutes=minutes)
            self.wait_until(resume)
            asyncio.run(set_paused(False))
        following = self.next_forecast_after(resume)
        # the held-back times are issued after the resume, not necessarily before the first
        # later one: wait (up to 15 simulated minutes) for all of them
        due = pd.date_range(at.floor(STEP) + pd.Timedelta(STEP), resume.floor(STEP), freq=STEP)
        table = self.poll_forecasts(
            lambda t: bool(due.isin(t.index).all()), resume + pd.Timedelta(minutes=15)
        )
        held = table[table.index.isin(due)]
        self.record(
            at,
            f"inbox ingest paused for {minutes:g} simulated min",
            f"resumed at {resume:%H:%M}; the {len(held)} issue times held back issued by "
            f"{dict(Counter(held.method))}; next forecast {following}",
        )

    def stall_replica(self, minutes: float) -> None:
        """The model replica hangs (SIGSTOP) for ``minutes``, then goes on (SIGCONT)."""
        at = self.sim_now()
        replicas = self.model_replicas()
        for p in replicas:
            p.suspend()
        until = at + pd.Timedelta(minutes=minutes)
        self.wait_until(until)
        for p in replicas:
            p.resume()
        table = self.forecasts()
        during = table[(table.index > at - pd.Timedelta(STEP)) & (table.index <= until)]
        made = ", ".join(f"{t:%H:%M} {r['method']}" for t, r in during.iterrows())
        self.record(
            at,
            f"model replica hung (SIGSTOP) for {minutes:g} simulated min",
            f"issued meanwhile: {made or 'none'}; next forecast "
            + self.next_forecast_after(self.sim_now()),
        )

    def second_up(self) -> None:
        at = self.sim_now()
        before = {n: r["pid"] for n, r in self.state()["processes"].items()}
        again = _motioncast("up", "--simulate", "--speed", str(self.speed), *self.args)
        after = {n: r["pid"] for n, r in self.state()["processes"].items()}
        said = (again.stderr.strip().splitlines() or [""])[-1]
        unharmed = "first unharmed" if before == after else f"processes changed: {after}"
        self.record(at, "second 'motioncast up'", f"exit {again.returncode}: {said}; {unharmed}")

    # ---- the run -----------------------------------------------------------------------
    def run(self) -> bool:
        sentinel = subprocess.Popen(["sleep", "100000"], start_new_session=True)
        up = _motioncast(
            "up", "--simulate", "--speed", str(self.speed), "--start", START.isoformat(),
            "--minutes", str(BACKLOG_MIN + self.minutes + 10), *self.args,
        )  # fmt: skip
        if up.returncode:
            print(up.stdout, up.stderr)
            raise SystemExit("the system did not start")
        print(f"up; drill of {self.minutes} simulated minutes at {self.speed:g} x", flush=True)
        try:
            schedule = [
                (10, self.kill_replica),
                (25, self.kill_prefect),
                (40, lambda: self.promote(corrupt=True)),
                (55, lambda: self.promote(corrupt=False)),
                (65, lambda: self.pause_ingest(30)),
                (100, self.second_up),
                (105, lambda: self.stall_replica(10)),
            ]
            for minute, fault in schedule:
                self.wait_sim(minute)
                fault()
            self.wait_sim(self.minutes)
            status = json.loads(_motioncast("status", "--json", *self.args).stdout)
        finally:
            started = time.monotonic()
            down = _motioncast("down", *self.args)
            took = time.monotonic() - started
        self.record(self.sim_now(), "motioncast down", f"{down.stderr.strip()} in {took:.0f} s")
        alive = sentinel.poll() is None
        sentinel.kill()
        return self.verdict(status, alive)

    def verdict(self, status: dict, sentinel_alive: bool) -> bool:
        from pipelines.forecast.issue import complete_windows
        from pipelines.forecast.store import ForecastStore
        from pipelines.store.archive import Archive

        archive = Archive(self.out / "archive")
        end = START + pd.Timedelta(minutes=BACKLOG_MIN + self.minutes)
        windows = complete_windows(archive, "simnet", 6)
        # the last cycle may not have come for the newest window: leave out the last 10 minutes
        due = windows[windows <= end - pd.Timedelta(minutes=10)]
        table = self.forecasts()
        issued = pd.DatetimeIndex(table.index)
        store = ForecastStore(self.out / "forecasts")
        commits = Counter(
            pd.Timestamp(message.split()[2])
            for _, message, _ in store.history()
            if message.startswith("forecast simnet ")
        )
        missing = due.difference(issued)
        twice = [t for t, n in commits.items() if n != 1]
        lost = [t for t in commits if t not in issued]
        fallbacks = table[table.method != "motionrnn"]
        no_reason = fallbacks[fallbacks.reason == ""]
        frames = archive.dataset("simnet")
        present = pd.DatetimeIndex(frames.time.values[frames.present.values.astype(bool)])

        def times(folder: Path) -> pd.DatetimeIndex:
            names = {p.name[:14] for p in folder.rglob("*.pvol.h5")}
            return pd.DatetimeIndex(sorted(pd.to_datetime(n, format="%Y%m%dT%H%MZ") for n in names))

        # an ingested volume is committed: it must be in the archive; one that arrived after the
        # last ingest run still waits in the inbox
        ingested = times(self.out / "inbox" / ".ingested")
        waiting = times(self.out / "inbox").difference(ingested)
        unarchived = ingested.difference(present)
        checks = [
            (f"issue times with a complete window, {due[0]:%H:%M}-{due[-1]:%H:%M}", len(due), ""),
            ("of them with a forecast in the store", len(due) - len(missing),
             ", ".join(f"{t:%H:%M}" for t in missing) or "all"),
            ("issue times committed more than once", len(twice), ""),
            ("forecast commits whose issue time the store lost", len(lost), ""),
            ("fallbacks / without a reason", f"{len(fallbacks)} / {len(no_reason)}", ""),
            ("volume times ingested / not in the archive", f"{len(ingested)} / {len(unarchived)}",
             f"{len(waiting)} still in the inbox at 'down'"),
            ("sentinel process alive (never signalled)", sentinel_alive, ""),
            ("restarts by the supervisor", status.get("restarts"), ""),
        ]  # fmt: skip
        print("\n| at (simulated) | fault | outcome |\n|---|---|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")
        print("\n| check | value | detail |\n|---|---|---|")
        for name, value, detail in checks:
            print(f"| {name} | {value} | {detail} |")
        print("\nforecasts by method:", dict(Counter(table.method)))
        for reason, n in Counter(fallbacks.reason).most_common(8):
            print(f"  {n:3d} x {reason[:150]}")
        ok = not len(missing) and not twice and not lost and not len(no_reason)
        ok = ok and sentinel_alive and not len(unarchived)
        print("\nverdict:", "PASS" if ok else "FAIL")
        return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--minutes", type=int, default=130, help="simulated minutes of drill")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="motioncast-drill-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"fault drill in {out}, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    raise SystemExit(0 if Drill(out, args.speed, args.minutes).run() else 1)


if __name__ == "__main__":
    main()
