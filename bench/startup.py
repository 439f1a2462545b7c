"""Start-up time of the CLI: `motioncast --help`, `archive info --help`, `ingest --help`, each a
fresh process, against `python -c 'import torch'` measured in the same run (the baseline).

    .venv/bin/python bench/startup.py [--repeats 5] [--root DIR]

--root runs the code of another checkout (e.g. a `git worktree` of an older commit) with this
interpreter: the verbs run as `python -c "from pipelines.cli import app; app()" ARGS` from that
folder, so its `pipelines` is the one imported (the script checks and prints which).
Runs are interleaved (one of each command per round, after one unmeasured warm-up round), and
the median of the rounds is reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; sys.argv[0] = 'motioncast'; from pipelines.cli import app; app()"
COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c 'import torch'  (baseline)", ["-c", "import torch"]),
    ("python -c pass", ["-c", "pass"]),
    ("motioncast --help", ["-c", CLI, "--help"]),
    ("motioncast archive info --help", ["-c", CLI, "archive", "info", "--help"]),
    ("motioncast ingest --help", ["-c", CLI, "ingest", "--help"]),
]


def seconds(python: str, args: list[str], root: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([python, *args], cwd=root, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{args} failed:\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose code runs")
    parser.add_argument("--python", default=sys.executable, help="interpreter (the venv's)")
    args = parser.parse_args()
    root = args.root.resolve()
    where = subprocess.run(
        [args.python, "-c", "import pipelines; print(pipelines.__file__)"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(root):
        raise SystemExit(f"pipelines imports from {where}, not from {root}")

    times: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
    for round_ in range(args.repeats + 1):
        for name, cmd in COMMANDS:
            t = seconds(args.python, cmd, root)
            if round_:  # round 0 warms the file cache
                times[name].append(t)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians[COMMANDS[0][0]]
    print(f"{'command':40s} {'median s':>9s} {'ratio':>6s}")
    for name, median in medians.items():
        print(f"{name:40s} {median:9.3f} {median / base:6.2f}")
    print(f"(median of {args.repeats}; code from {root}; ratio = over python -c 'import torch')")


if __name__ == "__main__":
    main()
