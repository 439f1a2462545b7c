"""Checkpoints: safetensors state dicts with the config as JSON metadata (nothing unpickled)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from motionrnn.config import MotionRNNConfig
from motionrnn.model import MotionRNN

CONFIG_KEY = "motionrnn_config"
RESERVED_KEYS = frozenset({CONFIG_KEY, "format"})


def save_checkpoint(
    path: str | os.PathLike[str], model: MotionRNN, extra_metadata: dict[str, str] | None = None
) -> None:
    """Write the model's weights and config (plus string metadata) atomically to ``path``."""
    extra = dict(extra_metadata or {})
    clash = RESERVED_KEYS & set(extra)
    if clash:
        raise ValueError(f"reserved metadata keys: {sorted(clash)}")
    if not all(isinstance(v, str) for v in extra.values()):
        raise TypeError("metadata values must be strings")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", CONFIG_KEY: model.config.to_json(), **extra}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> MotionRNN:
    """Rebuild the model from its config and load its weights (strictly) onto ``map_location``."""
    with safe_open(os.fspath(path), framework="pt", device=str(map_location)) as f:
        config = MotionRNNConfig.from_json(f.metadata()[CONFIG_KEY])
        state = {key: f.get_tensor(key) for key in f.keys()}
    model = MotionRNN(config).to(map_location)
    model.load_state_dict(state, strict=True)
    return model


def checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The extra metadata stored with ``save_checkpoint`` (config and format keys left out)."""
    with safe_open(os.fspath(path), framework="pt") as f:
        metadata = f.metadata() or {}
    return {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}
