import subprocess
import sys
from pathlib import Path

import pytest

from motionrnn import MotionRNNConfig


def test_json_round_trip() -> None:
    config = MotionRNNConfig.reference()
    assert MotionRNNConfig.from_json(config.to_json()) == config
    assert (config.layers, config.hidden, config.filter_size, config.patch) == (4, 64, 5, 4)
    assert config.patch_channels == 48


@pytest.mark.parametrize(
    "bad",
    [
        {"base": "mim"},
        {"hidden": 30},  # MotionGRU needs C/4
        {"filter_size": 4},
        {"neighbours": 2},
        {"alpha": 1.5},
        {"layers": 0},
    ],
)
def test_invalid_configs_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        MotionRNNConfig(**bad)


def test_unknown_json_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        MotionRNNConfig.from_json('{"layers": 2, "dropout": 0.1}')


def test_the_config_needs_no_torch_and_the_model_loads_on_first_use() -> None:
    code = (
        "import sys\n"
        "from motionrnn import MotionRNNConfig\n"
        "import motionrnn.config\n"
        "assert 'torch' not in sys.modules, 'torch imported with the config'\n"
        "from motionrnn import MotionRNN, load_checkpoint\n"
        "assert 'torch' in sys.modules and MotionRNN.__module__ == 'motionrnn.model'\n"
        "assert callable(load_checkpoint)\n"
        "import motionrnn\n"
        "assert set(motionrnn.__all__) <= set(dir(motionrnn))\n"
        "try:\n"
        "    motionrnn.Nothing\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('motionrnn.Nothing resolved')\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
