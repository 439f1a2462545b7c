"""Training on a two-node Ray cluster (``ray.cluster_utils.Cluster`` on this machine: a head
with no CPU for work, two nodes of 1 CPU), the archive and the run folder on S3 (the ``s3``
fixture's server): a node that runs a training worker is removed mid-run, and the elastic run
(training.scaling.min_workers) resumes from its last checkpoint on S3 and finishes.

Which node that is, the workers say themselves (a step hook writes each rank's node and world
size): Ray Train's elastic start takes the workers it finds resources for at that moment and
looks again only every 60 s, so a run on a cluster that has just come up may start with one
worker, on either node (the test once removed the idle node, and nothing restarted).

The run goes in a child process: it needs a Ray of its own, and the test session's local Ray
(the ``ray_local`` fixture) may be up already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from pipelines.grid import Grid
from pipelines.simulate import truth_frames
from pipelines.store import Archive
from tests.conftest import REPO, SMALL_TRAINING

pytestmark = pytest.mark.slow

ARCHIVE = "s3://motioncast/cluster/archive"
RUNS = "s3://motioncast/cluster/runs"

DRIVER = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    import ray, ray.train
    from ray.cluster_utils import Cluster
    from pipelines.config import load_config
    from pipelines.training.run import train

    archive, runs, registry, out, *overrides = sys.argv[1:]
    hosts = Path(out).with_name("workers")
    hosts.mkdir()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    cfg = load_config(None, [
        *overrides,
        f"training.scaling.address={cluster.address}",
        f"training.scaling.storage={runs}",
    ])
    events, swapped = [], {}

    def where(event) -> None:  # in each worker: its node and how many workers there are
        info = {"node": ray.get_runtime_context().get_node_id(),
                "workers": ray.train.get_context().get_world_size()}
        (hosts / f"rank{event.rank}.json").write_text(json.dumps(info))

    def lose_a_node() -> None:
        rank0 = json.loads((hosts / "rank0.json").read_text())
        node = next(n for n in nodes if n.node_id == rank0["node"])
        cluster.remove_node(node)  # a node is lost mid-run, with the worker on it
        swapped["removed_at_step"] = events[-1]
        swapped["workers"] = rank0["workers"]

    def on_progress(event) -> None:
        events.append(event.step)
        if event.step >= 12 and not swapped:
            swapped["started"] = True
            threading.Thread(target=lose_a_node, daemon=True).start()

    result = train(archive, registry, cfg, run_name="on-two-nodes", step_hook=where,
                   on_progress=on_progress)
    json.dump(
        {"steps": result.state.step, "events": events, "swap": swapped,
         "location": result.run_location, "version": result.version.version},
        open(out, "w"),
    )
    cluster.shutdown()
    """
)


def test_two_nodes_a_node_lost_mid_run_on_s3_storage(s3, tmp_path: Path):
    grid = Grid.from_extent("EPSG:3035", (3.9e6, 3.0e6, 3.9e6 + 128e3, 3.0e6 + 128e3), 2000.0)
    frames = list(truth_frames("syn", grid, pd.Timestamp("2026-06-01"), 6 * 60, seed=0))
    Archive(ARCHIVE, create=True).write(frames, "synthetic truth")
    out = tmp_path / "result.json"
    overrides = [
        *SMALL_TRAINING,
        "training.max_steps=60",
        "training.scaling.workers=2",
        "training.scaling.min_workers=1",
        "training.scaling.max_failures=3",
    ]
    run = subprocess.run(
        [sys.executable, "-c", DRIVER, ARCHIVE, RUNS, str(tmp_path / "registry"), str(out)]
        + overrides,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["steps"] == 60 and result["version"] == "v0001"
    assert "removed_at_step" in result["swap"], result
    events = result["events"]
    restarts = [b for a, b in zip(events, events[1:], strict=False) if b < a]
    assert restarts, result  # the worker group was restarted ...
    assert all(step % 5 == 0 for step in restarts), result  # ... from a checkpoint (every 5)
    assert events[-1] == 60
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="motioncast")["Contents"]]
    run_files = [k for k in keys if k.startswith("cluster/runs/on-two-nodes/")]
    assert "cluster/runs/on-two-nodes/motioncast-run.json" in run_files
    assert "cluster/runs/on-two-nodes/motioncast-windows.json" in run_files
    assert any("checkpoint" in k for k in run_files)
    assert result["location"] == f"{RUNS}/on-two-nodes"


RELAY = textwrap.dedent(
    """
    import contextlib
    import ray
    from ray.cluster_utils import Cluster
    from pipelines.training.progress import StepEvent, relay

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    got = [[] for _ in range(4)]
    with contextlib.ExitStack() as stack:  # four runs' progress at once, four inboxes
        hooks = [stack.enter_context(relay(g.append, every_s=0.1)) for g in got]
        for node in nodes:
            cluster.remove_node(node)  # every worker node lost
        for hook in hooks:
            for step in range(3):
                hook(StepEvent(rank=0, step=step, epoch=0, budget=0.0, elapsed_s=0.0))
    print([[e.step for e in g] for g in got])
    ray.shutdown()
    cluster.shutdown()
    """
)


def test_progress_survives_the_loss_of_every_worker_node():
    """Regression: the progress inbox went wherever Ray put it, a worker node as often as not;
    losing that node lost the run's progress (the node-loss test above then saw no restart)."""
    run = subprocess.run(
        [sys.executable, "-c", RELAY], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == str([[0, 1, 2]] * 4), run.stderr[-3000:]
