"""The model registry: whole versions, cards, promotion that refuses a worse model."""

import dataclasses
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from motionrnn import MotionRNN, MotionRNNConfig, load_checkpoint, save_checkpoint
from pipelines.registry import Registry, RegistryError
from tests.conftest import REPO

WINDOWS = [["simnet", 10, "2026-06-01T01:00:00", 0.1], ["simnet", 40, "2026-06-01T03:30:00", 0.2]]


def card(csi: float, lower: float = 0.01, windows: list | None = None, paired: bool = True) -> dict:
    """A card whose model scores ``csi``; its paired test against S-PROG has this lower end."""
    model = {"csi_1mm": csi, "mae": 0.3}
    if paired:
        model["paired"] = {
            "baseline": "sprog",
            "threshold_mm_h": 1.0,
            "difference": lower + 0.02,
            "lower": lower,
            "upper": lower + 0.04,
            "confidence": 0.95,
            "windows": 12,
            "resamples": 2000,
        }
    return {
        "run": f"run-{csi}",
        "data": {"store": "a", "domains": ["simnet"]},
        "validation": {
            "model": model,
            "sprog": {"csi_1mm": csi - lower - 0.02},
            "extrapolation": {"csi_1mm": 0.3},
            "persistence": {"csi_1mm": 0.2},
        },
        "validation_windows": WINDOWS if windows is None else windows,
    }


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, MotionRNN(MotionRNNConfig(hidden=8, layers=2)), {"run": "r"})
    return path


def test_register_numbers_versions_and_keeps_weights_and_card(tmp_path: Path, checkpoint: Path):
    reg = Registry(tmp_path / "reg")
    a, b = reg.register(checkpoint, card(0.5)), reg.register(checkpoint, card(0.6))
    assert [v.version for v in reg.versions()] == ["v0001", "v0002"] == [a.version, b.version]
    assert load_checkpoint(b.checkpoint).config.hidden == 8
    shown = reg.get("v0002")
    assert shown.card["run"] == "run-0.6" and shown.score() == 0.6
    assert shown.card["checkpoint_metadata"] == {"run": "r"}
    assert not [p for p in (tmp_path / "reg" / "versions").iterdir() if p.name.startswith(".")]
    with pytest.raises(RegistryError, match="no version 'v0009'"):
        reg.get("v0009")
    with pytest.raises(RegistryError, match="not a motionrnn checkpoint"):
        reg.register(tmp_path / "reg" / "versions" / "v0001" / "card.json", card(0.1))


def test_promotion_refuses_a_worse_model_unless_forced(tmp_path: Path, checkpoint: Path):
    reg = Registry(tmp_path / "reg")
    for csi in (0.5, 0.4, 0.6):
        reg.register(checkpoint, card(csi))
    assert reg.promoted() is None
    reg.promote("v0001")  # nothing in service: accepted
    with pytest.raises(RegistryError, match="0.400 < 0.500 of v0001 in service .*: refused"):
        reg.promote("v0002")
    assert reg.promoted().version == "v0001"
    reg.promote("v0003")
    reg.promote("v0002", force=True)
    record = json.loads((tmp_path / "reg" / "promoted.json").read_text())
    assert record["version"] == "v0002"
    assert [(h["version"], h["forced"]) for h in record["history"]] == [
        ("v0001", False),
        ("v0003", False),
        ("v0002", True),
    ]


def test_promotion_refuses_a_model_that_does_not_surely_beat_sprog(tmp_path, checkpoint):
    """The system never serves a model that does not beat S-PROG, what the cycle issues without
    one: the paired bootstrap on its card must put S-PROG below it, even with none in service."""
    reg = Registry(tmp_path / "reg")
    reg.register(checkpoint, card(0.45, lower=-0.004))
    reg.register(checkpoint, card(0.45, lower=0.0))
    reg.register(checkpoint, card(0.45, paired=False))  # registered before the test existed
    for version in ("v0001", "v0002"):
        with pytest.raises(RegistryError, match="against pysteps sprog on its 12 validation"):
            reg.promote(version)
    with pytest.raises(RegistryError, match="no paired test against sprog"):
        reg.promote("v0003")
    assert reg.promoted() is None
    reg.promote("v0001", force=True)
    assert reg.promoted().version == "v0001"


def test_promotion_compares_on_the_same_windows(tmp_path, checkpoint):
    reg = Registry(tmp_path / "reg")
    reg.register(checkpoint, card(0.5))
    reg.register(checkpoint, card(0.45, windows=WINDOWS[:1]))  # validated elsewhere
    reg.promote("v0001")
    with pytest.raises(RegistryError, match="scored on different windows"):
        reg.promote("v0002")  # its 0.45 and v0001's 0.5 are not comparable
    with pytest.raises(RegistryError, match="0.520 < 0.530 of v0001 .*scored again"):
        reg.promote("v0002", rescored={"v0002": 0.52, "v0001": 0.53})
    reg.promote("v0002", rescored={"v0002": 0.56, "v0001": 0.53})
    assert reg.promoted().version == "v0002"


# A writer in a process of its own: it says "ready" once imported, then waits for a line on its
# stdin, so that all of them start their register/promote at the same moment.
_WRITER = """
import json, sys
from pipelines.registry import Registry
if sys.argv[1] == "register":
    import motionrnn.model  # torch, imported before the start
print("ready", flush=True)
sys.stdin.readline()
op, root, arg = sys.argv[1:4]
if op == "register":
    print(Registry(root).register(arg, json.loads(sys.argv[4])).version, flush=True)
else:
    Registry(root).promote(arg, force=True)
"""


def _race(jobs: list[list[str]]) -> list[str]:
    """Run the writers ``jobs`` (``_WRITER``'s arguments) at once; their outputs, each checked
    to have ended well."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in jobs
    ]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.communicate(timeout=60)[1]
        for p in procs:  # the start
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err
    return [out for out, _ in results]


def _debris(root: Path) -> list[Path]:
    """Staging folders and temporary files left behind in the registry."""
    return [p for p in root.rglob("*") if p.name.startswith(".staging-") or p.suffix == ".part"]


def test_concurrent_registrations_each_get_their_own_version(tmp_path: Path, checkpoint: Path):
    """8 processes register at once: one version each, v0001..v0008, each card its own."""
    root = tmp_path / "reg"
    runs = [f"run-{i}" for i in range(8)]
    outs = _race(
        [
            ["register", str(root), str(checkpoint), json.dumps({**card(0.5), "run": r})]
            for r in runs
        ]
    )
    got = {out.strip(): run for out, run in zip(outs, runs, strict=True)}
    assert sorted(got) == [f"v{i:04d}" for i in range(1, 9)]
    reg = Registry(root)
    assert [v.version for v in reg.versions()] == sorted(got)
    assert all(reg.get(version).card["run"] == run for version, run in got.items())
    assert _debris(root) == []


def test_concurrent_promotions_lose_none(tmp_path: Path, checkpoint: Path):
    """8 processes promote at once: every promotion is in the history, each replacing the one
    before it, and promoted.json is whole, readable as any new file would be."""
    root = tmp_path / "reg"
    reg = Registry(root)
    versions = [reg.register(checkpoint, card(0.5 + i / 100)).version for i in range(8)]
    _race([["promote", str(root), version] for version in versions])
    record = json.loads((root / "promoted.json").read_text())
    history = record["history"]
    assert sorted(h["version"] for h in history) == versions
    assert [h["replaced"] for h in history] == [None] + [h["version"] for h in history[:-1]]
    assert record["version"] == history[-1]["version"] == reg.promoted().version
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((root / "promoted.json").stat().st_mode) == 0o666 & ~umask
    assert _debris(root) == []


def test_a_writer_waits_for_the_lock_a_bounded_time(tmp_path: Path, checkpoint: Path):
    """Another process holds the registry's lock past the wait: one line, nothing written."""
    root = tmp_path / "reg"
    Registry(root).register(checkpoint, card(0.5))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys\n"
            "f = open(sys.argv[1], 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(root / ".lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        reg = Registry(root, lock_timeout_s=0.3)
        start = time.monotonic()
        with pytest.raises(RegistryError) as err:
            reg.promote("v0001", force=True)
        assert 0.3 <= time.monotonic() - start < 10
        assert str(err.value) == (
            f"{root}: the registry is locked by another writer for more than 0.3 s"
        )
        with pytest.raises(RegistryError, match=r"^\S+: the registry is locked .* 0.3 s$"):
            reg.register(checkpoint, card(0.6))
        assert reg.promoted() is None and [v.version for v in reg.versions()] == ["v0001"]
        assert _debris(root) == []
    finally:
        holder.communicate(timeout=30)  # its stdin closed: it ends, the lock with it
    reg.promote("v0001", force=True)
    assert reg.register(checkpoint, card(0.6)).version == "v0002"


@pytest.mark.parametrize("how", ["read-only", "not-a-folder"])
def test_os_failures_are_one_line_registry_errors(tmp_path: Path, checkpoint: Path, how: str):
    """A registry that cannot be written: register and promote say where and why in one line."""
    root = tmp_path / "reg"
    Registry(root).register(checkpoint, card(0.5))
    if how == "read-only":
        (root / "promoted.json").write_text('{"version": null, "history": []}\n')
        for path in (root / "versions", root):
            path.chmod(0o500)
        if os.access(root, os.W_OK):  # root, say: the permissions do not stop it
            for path in (root, root / "versions"):
                path.chmod(0o700)
            pytest.skip("this user writes to read-only folders (the not-a-folder case runs)")
        reason, promote_failure = "Permission denied", str(root)
    else:  # a file where the versions folder should be, a folder where promoted.json should be
        (root / "versions").rename(tmp_path / "kept")
        (root / "versions").write_text("not a folder")
        (root / "promoted.json").mkdir()
        reason, promote_failure = "Is a directory", str(root / "promoted.json")
    try:
        with pytest.raises(RegistryError) as registering:
            Registry(root).register(checkpoint, card(0.6))
        if how == "not-a-folder":
            (root / "versions").unlink()
            (tmp_path / "kept").rename(root / "versions")
        with pytest.raises(RegistryError) as promoting:
            Registry(root).promote("v0001", force=True)
    finally:
        for path in (root, root / "versions"):
            path.chmod(0o700)
    for err in (registering, promoting):
        assert "\n" not in str(err.value) and "Errno" not in str(err.value)
    assert str(registering.value).startswith(str(root / "versions"))
    assert str(registering.value).endswith(
        f"cannot register a version ({'File exists' if how == 'not-a-folder' else reason})"
    )
    assert str(promoting.value).startswith(promote_failure)
    assert str(promoting.value).endswith(f"cannot promote v0001 ({reason})")
    assert [v.version for v in Registry(root).versions()] == ["v0001"]


def test_models_cli(tmp_path: Path, checkpoint: Path):
    reg = Registry(tmp_path / "reg")
    reg.register(checkpoint, card(0.5))
    reg.register(checkpoint, card(0.4))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "models",
                *args,
                "--registry",
                str(tmp_path / "reg"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert cli("promote", "v0001").returncode == 0
    for bad in (tmp_path / "nothing", tmp_path / "reg"):  # no store; a folder of other files
        wrong = cli("promote", "v0002", "--store", str(bad))
        assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
        assert wrong.stderr.strip().startswith(f"error: {bad}:")
    assert Registry(tmp_path / "reg").promoted().version == "v0001"
    refused = cli("promote", "v0002")
    assert refused.returncode == 1 and "refused" in refused.stderr
    listing = cli("list")
    assert listing.returncode == 0 and "v0002" in listing.stdout and "0.500" in listing.stdout
    shown = cli("show", "v0002")
    assert json.loads(shown.stdout)["validation"]["model"]["csi_1mm"] == 0.4
    assert cli("show", "v0007").returncode == 2


@pytest.mark.slow
def test_promote_scores_both_models_again_on_the_candidates_windows(truth_archive, tmp_path):
    """Two versions validated on different windows: `models promote --store` scores both on
    the candidate's windows. The untrained model is S-PROG (a zero head), so a model whose head
    was damaged scores below it there and is refused."""
    import pandas as pd
    import torch

    from pipelines.config import load_config
    from pipelines.store import open_archive
    from pipelines.training.evaluate import score_models
    from pipelines.training.windows import SPLITS, split_windows
    from tests.conftest import SMALL_TRAINING

    t = load_config(None, SMALL_TRAINING).training
    ds = open_archive(truth_archive)
    split = split_windows(
        "syn", pd.DatetimeIndex(ds.time.values), ds.present.values, ds.wet_fraction.values, t.data
    )
    windows = [w for name in SPLITS for w in split[name]][:6]
    torch.manual_seed(0)
    good = MotionRNN(t.model)
    bad = MotionRNN(t.model)
    with torch.no_grad():
        bad.head.weight.normal_(std=0.5)  # motion and source of noise (measured: CSI -0.09)
    scores = score_models(str(truth_archive), windows, {"good": good, "bad": bad}, t)
    summary = {k: s.summary()["csi_1mm"] for k, s in scores.items()}
    assert summary["good"] == pytest.approx(summary["sprog"], abs=0.01)
    assert summary["bad"] < summary["good"] - 0.05

    reg = Registry(tmp_path / "reg")
    training = t.model_dump(mode="json", exclude={"model"})
    for name, model, csi, on in (("good", good, 0.6, windows[:3]), ("bad", bad, 0.9, windows)):
        path = tmp_path / f"{name}.safetensors"
        save_checkpoint(path, model)
        card_ = card(csi, windows=[w.to_json() for w in on])
        card_["data"]["snapshot"] = None
        card_.update(training=training, model_config=dataclasses.asdict(t.model))
        reg.register(path, card_)
    reg.promote("v0001")

    def promote(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "models", "promote", "v0002"]
            + ["--registry", str(tmp_path / "reg"), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )

    unscored = promote()
    assert unscored.returncode == 1 and "different windows" in unscored.stderr
    rescored = promote("--store", str(truth_archive))
    assert rescored.returncode == 1, rescored.stderr
    assert "scored again on v0002's validation windows" in rescored.stderr
    assert reg.promoted().version == "v0001"
