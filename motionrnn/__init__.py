"""MotionRNN (Wu et al., CVPR 2021) in pure PyTorch: the model, training helpers, checkpoints.

Only the configuration is imported eagerly (it needs no torch): ``from motionrnn import
MotionRNNConfig`` stays cheap, and the torch modules load on first use of a name that needs them
(``from motionrnn import MotionRNN`` works as before).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from motionrnn.config import MotionRNNConfig

if TYPE_CHECKING:
    from motionrnn.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
    from motionrnn.model import KNOWN, MotionRNN, Prediction, State
    from motionrnn.patching import from_patches, to_patches
    from motionrnn.sampling import (
        TeacherProbabilities,
        reverse_scheduled_sampling,
        scheduled_sampling,
        teacher_mask,
    )
    from motionrnn.training import (
        event_loss,
        fss_loss,
        intensity_weights,
        motion_smoothness,
        next_frame_loss,
        parameter_groups,
    )

# public name -> submodule that defines it (imported, with torch, on first access)
_LAZY = {
    "KNOWN": "model",
    "MotionRNN": "model",
    "Prediction": "model",
    "State": "model",
    "TeacherProbabilities": "sampling",
    "checkpoint_metadata": "checkpoint",
    "event_loss": "training",
    "fss_loss": "training",
    "from_patches": "patching",
    "intensity_weights": "training",
    "load_checkpoint": "checkpoint",
    "motion_smoothness": "training",
    "next_frame_loss": "training",
    "parameter_groups": "training",
    "reverse_scheduled_sampling": "sampling",
    "save_checkpoint": "checkpoint",
    "scheduled_sampling": "sampling",
    "teacher_mask": "sampling",
    "to_patches": "patching",
}

__all__ = [
    "KNOWN",
    "MotionRNN",
    "MotionRNNConfig",
    "Prediction",
    "State",
    "TeacherProbabilities",
    "checkpoint_metadata",
    "event_loss",
    "from_patches",
    "fss_loss",
    "intensity_weights",
    "load_checkpoint",
    "motion_smoothness",
    "next_frame_loss",
    "parameter_groups",
    "reverse_scheduled_sampling",
    "save_checkpoint",
    "scheduled_sampling",
    "teacher_mask",
    "to_patches",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'motionrnn' has no attribute {name!r}")
    value = getattr(import_module(f"motionrnn.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
