"""The model registry: whole versions, cards, promotion that refuses a worse model."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from motionrnn import MotionRNN, MotionRNNConfig, load_checkpoint, save_checkpoint
from pipelines.registry import Registry, RegistryError
from tests.conftest import REPO

WINDOWS = [["simnet", 10, "2026-06-01T01:00:00", 0.1], ["simnet", 40, "2026-06-01T03:30:00", 0.2]]


def card(csi: float, extrapolation: float = 0.3, windows: list | None = None) -> dict:
    return {
        "run": f"run-{csi}",
        "data": {"store": "a", "domains": ["simnet"]},
        "validation": {
            "model": {"csi_1mm": csi, "mae": 0.3},
            "extrapolation": {"csi_1mm": extrapolation},
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


def test_promotion_refuses_a_model_that_does_not_beat_extrapolation(tmp_path, checkpoint):
    """The system never serves a model worse than its own fallback, even with none in
    service."""
    reg = Registry(tmp_path / "reg")
    reg.register(checkpoint, card(0.35, extrapolation=0.41))
    reg.register(checkpoint, card(0.41, extrapolation=0.41))
    for version in ("v0001", "v0002"):
        with pytest.raises(RegistryError, match="not above pysteps extrapolation's 0.410"):
            reg.promote(version)
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
    the candidate's windows. The untrained advective model is the extrapolation (a zero
    head), so a model whose head was damaged scores below it there and is refused."""
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
    good = MotionRNN(t.model)
    bad = MotionRNN(t.model)
    with torch.no_grad():
        bad.head.weight.normal_(std=0.5)  # a source term of noise
    scores = score_models(str(truth_archive), windows, {"good": good, "bad": bad}, t)
    summary = {k: s.summary()["csi_1mm"] for k, s in scores.items()}
    assert summary["good"] == pytest.approx(summary["extrapolation"], abs=0.02)
    assert summary["bad"] < summary["good"] - 0.05

    reg = Registry(tmp_path / "reg")
    training = t.model_dump(mode="json", exclude={"model"})
    for name, model, csi, on in (("good", good, 0.6, windows[:3]), ("bad", bad, 0.9, windows)):
        path = tmp_path / f"{name}.safetensors"
        save_checkpoint(path, model)
        card_ = card(csi, extrapolation=0.5, windows=[w.to_json() for w in on])
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
