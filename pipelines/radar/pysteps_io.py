"""pysteps' importers, imported quietly (pysteps prints its configuration path on import)."""

from __future__ import annotations

import contextlib
import io

with contextlib.redirect_stdout(io.StringIO()):
    import pysteps  # noqa: F401
    from pysteps.io import importers

__all__ = ["importers"]
