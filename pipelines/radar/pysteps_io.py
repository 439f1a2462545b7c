"""pysteps, imported quietly (pysteps prints its configuration path on import): the importers
for the composite readers, and the motion, extrapolation and transformation modules for the
baseline nowcasts."""

from __future__ import annotations

import contextlib
import io

with contextlib.redirect_stdout(io.StringIO()):
    import pysteps  # noqa: F401
    from pysteps import extrapolation, motion
    from pysteps.io import importers
    from pysteps.utils import transformation

__all__ = ["extrapolation", "importers", "motion", "transformation"]
