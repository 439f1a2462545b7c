"""motioncast pipelines: everything that is not orchestration (readers, stores, CLI, ...).

``pipelines.open_archive(path, domain=None)`` opens the archive and
``pipelines.open_forecasts(path, domain=None)`` the forecast store, each as a lazy xarray Dataset.
"""

from __future__ import annotations

from typing import Any

__all__ = ["open_archive", "open_forecasts"]


def __getattr__(name: str) -> Any:  # lazy: importing a submodule should not load the stores
    if name == "open_archive":
        from pipelines.store.archive import open_archive

        return open_archive
    if name == "open_forecasts":
        from pipelines.forecast.store import open_forecasts

        return open_forecasts
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
