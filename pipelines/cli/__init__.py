"""The ``motioncast`` command line: one verb per stage of the system.

Each module of this package holds one verb or one group of verbs (``archive``, ``ingest``,
``simulate``, ``train`` and ``models``, ``forecast``, ``verify``, ``plot``, and ``up``,
``down``, ``status`` in ``lifecycle``) and a ``register(app)`` that adds them; ``common`` holds
what they share. The modules are found, not listed: a new verb is a new module.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(
    help="motioncast: radar precipitation nowcasting with MotionRNN.\n\n"
    "Every verb reads the default configuration, then --config FILE, then --set key=value "
    "overrides, then its own flags.",
    no_args_is_help=True,
    add_completion=False,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name.startswith("_"):  # __main__
        continue
    _verbs = importlib.import_module(f"{__name__}.{_module.name}")
    if hasattr(_verbs, "register"):
        _verbs.register(app)
