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
