"""The model registry: whole versions, cards, promotion that refuses a worse model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from motionrnn import MotionRNN, MotionRNNConfig, load_checkpoint, save_checkpoint
from pipelines.registry import Registry, RegistryError
from tests.conftest import REPO


def card(csi: float) -> dict:
    return {
        "run": f"run-{csi}",
        "data": {"store": "a", "domains": ["simnet"]},
        "validation": {
            "model": {"csi_1mm": csi, "mae": 0.3},
            "extrapolation": {"csi_1mm": 0.4},
            "persistence": {"csi_1mm": 0.2},
        },
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
    with pytest.raises(RegistryError, match="0.400 < 0.500 of v0001 in service: refused"):
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


def test_models_cli(tmp_path: Path, checkpoint: Path):
    reg = Registry(tmp_path / "reg")
    reg.register(checkpoint, card(0.5))
    reg.register(checkpoint, card(0.3))

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
    refused = cli("promote", "v0002")
    assert refused.returncode == 1 and "refused" in refused.stderr
    listing = cli("list")
    assert listing.returncode == 0 and "v0002" in listing.stdout and "0.500" in listing.stdout
    shown = cli("show", "v0002")
    assert json.loads(shown.stdout)["validation"]["model"]["csi_1mm"] == 0.3
    assert cli("show", "v0007").returncode == 2
