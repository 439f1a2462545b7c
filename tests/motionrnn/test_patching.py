import pytest
import torch

from motionrnn.layers import from_patches, to_patches


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_round_trip_non_square(patch: int) -> None:
    frames = torch.randn(2, 3, 2, 8 * patch, 5 * patch)
    patches = to_patches(frames, patch)
    assert patches.shape == (2, 3, 2 * patch * patch, 8, 5)
    torch.testing.assert_close(from_patches(patches, patch), frames, rtol=0, atol=0)


def test_a_patch_holds_one_block_of_pixels() -> None:
    frame = torch.arange(16.0).view(1, 4, 4)
    patches = to_patches(frame, 2)  # (4, 2, 2)
    assert patches[:, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]


def test_indivisible_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        to_patches(torch.zeros(1, 1, 10, 12), 4)
