"""pysteps, imported quietly: the importers for the composite readers, the motion,
extrapolation, nowcast and transformation modules for the motion prior and the baselines, and
verification for the scores; cascade, postprocessing and timeseries, against which the tests
check ``motionrnn.sprog``.

pysteps prints its configuration path on import, and its nowcasts print their progress. Ray
Train reroutes ``print`` in its workers to logging, past any stdout redirect, so ``print`` itself
is silenced for the import and inside ``quiet()``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet() -> Iterator[None]:
    """``print`` does nothing inside (pysteps' progress lines)."""
    saved = builtins.print
    builtins.print = lambda *args, **kwargs: None
    try:
        yield
    finally:
        builtins.print = saved


with quiet():
    import pysteps  # noqa: F401
    from pysteps import (
        cascade,
        extrapolation,
        motion,
        nowcasts,
        postprocessing,
        timeseries,
        verification,
    )
    from pysteps.io import importers
    from pysteps.utils import cleansing, interpolate, transformation

__all__ = [
    "cascade",
    "cleansing",
    "extrapolation",
    "importers",
    "interpolate",
    "motion",
    "nowcasts",
    "postprocessing",
    "quiet",
    "timeseries",
    "verification",
    "transformation",
]
