"""pysteps, imported quietly: the importers for the composite readers, and the motion,
extrapolation and transformation modules for the baseline nowcasts.

pysteps prints its configuration path on import. Ray Train reroutes ``print`` in its workers to
logging, past any stdout redirect, so ``print`` itself is silenced for the import.
"""

from __future__ import annotations

import builtins

_print = builtins.print
builtins.print = lambda *args, **kwargs: None
try:
    import pysteps  # noqa: F401
    from pysteps import extrapolation, motion
    from pysteps.io import importers
    from pysteps.utils import transformation
finally:
    builtins.print = _print

__all__ = ["extrapolation", "importers", "motion", "transformation"]
