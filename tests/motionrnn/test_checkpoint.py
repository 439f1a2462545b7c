import dataclasses

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from motionrnn import (
    MotionRNN,
    MotionRNNConfig,
    checkpoint_metadata,
    load_checkpoint,
    save_checkpoint,
)

CONFIG = MotionRNNConfig(
    layers=2,
    hidden=8,
    filter_size=3,
    patch=2,
    frames_in=3,
    frames_out=2,
    output="frame",
    context=False,
)


def test_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = MotionRNN(dataclasses.replace(CONFIG, base="convlstm", alpha=0.25))
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, {"data_fingerprint": "abc123"})
    loaded = load_checkpoint(path, map_location="cpu")
    assert loaded.config == model.config
    frames = torch.rand(1, 3, 1, 8, 12)
    torch.testing.assert_close(loaded.generate(frames), model.generate(frames), rtol=0, atol=0)
    assert checkpoint_metadata(path) == {"data_fingerprint": "abc123"}
    assert not (tmp_path / "model.safetensors.tmp").exists()


def test_reserved_or_non_string_metadata_is_refused(tmp_path) -> None:
    model = MotionRNN(CONFIG)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "a.safetensors", model, {"motionrnn_config": "{}"})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "b.safetensors", model, {"score": 0.5})  # type: ignore[dict-item]


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path) -> None:
    state = MotionRNN(CONFIG).state_dict()
    bigger = dataclasses.replace(CONFIG, hidden=16)
    path = tmp_path / "bad.safetensors"
    save_file(dict(state), path, metadata={"motionrnn_config": bigger.to_json()})
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_checkpoint(path)
    del state["head.weight"]
    save_file(dict(state), path, metadata={"motionrnn_config": CONFIG.to_json()})
    with pytest.raises(RuntimeError, match="Missing key"):
        load_checkpoint(path)


def test_a_pickle_is_not_a_checkpoint(tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save(MotionRNN(CONFIG).state_dict(), path)
    with pytest.raises(SafetensorError):  # refused as a header, never unpickled
        load_checkpoint(path)
