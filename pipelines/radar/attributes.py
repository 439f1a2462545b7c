"""Text of a file attribute, as HDF5 and NetCDF hand them over (bytes, str, 1-element arrays)."""

from __future__ import annotations

import numpy as np


def attr_text(value: object) -> str:
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else b""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
