"""MotionRNN (Wu et al., CVPR 2021) in pure PyTorch, read top to bottom in six files:

- ``config``: ``MotionRNNConfig``, the model's settings (no torch: imported eagerly);
- ``layers``: the recurrent cells with the Motion Highway, MotionGRU and its warp, patching,
  advection;
- ``sprog``: pysteps' S-PROG in PyTorch, the model's prior;
- ``prior``: its learned low-dimensional stage (gains, blend, trend);
- ``model``: the stack, its forward and generation, and its checkpoints;
- ``training``: the losses, the optimiser groups and scheduled sampling.

``from motionrnn import MotionRNN`` works; the torch modules load on first use of a name that
needs them, so ``from motionrnn import MotionRNNConfig`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from motionrnn.config import MotionRNNConfig

_LAZY = {  # submodule -> the public names it defines (imported, with torch, on first access)
    "model": ("KNOWN", "MotionRNN", "Prediction", "State")
    + ("checkpoint_metadata", "load_checkpoint", "save_checkpoint"),
    "training": ("event_loss", "fss_loss", "intensity_weights", "motion_smoothness")
    + ("next_frame_loss", "parameter_groups", "TeacherProbabilities")
    + ("reverse_scheduled_sampling", "scheduled_sampling", "teacher_mask"),
    "layers": ("from_patches", "to_patches"),
}
_OWNER = {name: module for module, names in _LAZY.items() for name in names}
__all__ = ["MotionRNNConfig", *sorted(_OWNER)]


def __getattr__(name: str) -> Any:
    module = _OWNER.get(name)
    if module is None:
        raise AttributeError(f"module 'motionrnn' has no attribute {name!r}")
    value = getattr(import_module(f"motionrnn.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
