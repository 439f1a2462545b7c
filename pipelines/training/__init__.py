"""Training MotionRNN on the archive: windows, transform, splits, data loading."""
