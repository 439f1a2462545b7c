"""MotionRNN (Wu et al., CVPR 2021) in pure PyTorch: the model, training helpers, checkpoints."""

from motionrnn.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from motionrnn.config import MotionRNNConfig
from motionrnn.model import MotionRNN, State
from motionrnn.patching import from_patches, to_patches
from motionrnn.sampling import (
    TeacherProbabilities,
    reverse_scheduled_sampling,
    scheduled_sampling,
    teacher_mask,
)
from motionrnn.training import next_frame_loss, parameter_groups

__all__ = [
    "MotionRNN",
    "MotionRNNConfig",
    "State",
    "TeacherProbabilities",
    "checkpoint_metadata",
    "from_patches",
    "load_checkpoint",
    "next_frame_loss",
    "parameter_groups",
    "reverse_scheduled_sampling",
    "save_checkpoint",
    "scheduled_sampling",
    "teacher_mask",
    "to_patches",
]
