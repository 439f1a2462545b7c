"""The model replica of the forecast service: the promoted MotionRNN and how it follows the
registry (``PromotedModel``), served by the ``ModelServer`` deployment, which batches concurrent
forecasts of one grid size into one model call (``@serve.batch``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from pipelines.config import MotioncastConfig
from pipelines.errors import error_line
from pipelines.registry import Registry

log = logging.getLogger(__name__)


class PromotedModel:
    """The model in service and how it follows the registry (``refresh``, every poll).

    What is in service follows what the registry's ``promotion()`` names (not a file time):

    - the version in service: nothing to do (an earlier failure of another version is over);
    - another version: it is loaded (``load``, beside the one in service) and swapped in with
      one assignment once it has loaded. When loading fails, whatever the error (a corrupt
      checkpoint, its folder missing for a while), the model in service stays (or none), one
      warning line says why, and it is tried again after ``first_retry`` seconds, then twice as
      long each time up to ``max_retry``; a load that succeeds starts the backoff over;
    - no version (``"version": null``, the promotion withdrawn): the model leaves service;
    - nothing readable (promoted.json missing, unreadable or half-written: a registry being
      copied or restored): the model in service stays.

    ``status()`` says which version is in service and why a promoted one is not (``error``);
    ``unavailable()`` is the reason a model forecast is refused while none is in service.
    """

    def __init__(
        self,
        registry: str | Path,
        load: Callable[[], Any],
        first_retry: float,
        max_retry: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.registry = Path(registry)
        self.load = load  # () -> a forecaster of the promoted version (with .version)
        self.first_retry, self.max_retry = first_retry, max(first_retry, max_retry)
        self.clock = clock
        self.forecaster = None
        self.error: str | None = None  # why the promoted version is not in service
        self._failed: str | None = None  # the version whose last load failed
        self._delay = 0.0
        self._retry_at = 0.0

    def version(self) -> str | None:
        forecaster = self.forecaster
        return forecaster.version if forecaster is not None else None

    def status(self) -> dict[str, str | None]:
        return {"model_version": self.version(), "model_error": self.error}

    def unavailable(self) -> str:
        if self.error:
            return f"no model in service: {self.error}"
        return f"{self.registry}: no model is promoted"

    def refresh(self) -> str | None:
        """Follow the promotion (the rule in the class docstring); the version in service."""
        state, value = Registry(self.registry).promotion()
        current = self.version()
        if state == "unknown":
            if value is not None and value != self.error:
                log.warning("%s; keeping %s", value, current or "none")
                self.error = value
            return current
        if state == "withdrawn":
            if current is not None:
                log.info("promotion withdrawn: model %s leaves service", current)
            self.forecaster, self.error, self._failed = None, None, None
            return None
        if value == current:
            self.error, self._failed = None, None
            return current
        now = self.clock()
        if value == self._failed and now < self._retry_at:
            return current
        try:
            loaded = self.load()
        except Exception as exc:  # any failure: keep what serves, try again later
            again = value == self._failed
            self._delay = min(2 * self._delay, self.max_retry) if again else self.first_retry
            self._failed, self._retry_at = value, now + self._delay
            self.error = f"{value} failed to load ({error_line(exc)})"
            log.warning(
                "model %s failed to load (%s); keeping %s, next try in %g s",
                value,
                error_line(exc),
                current or "none",
                self._delay,
            )
            return current
        self.forecaster, self.error, self._failed = loaded, None, None  # the swap
        log.info("model in service: %s", loaded.version)
        return loaded.version


@serve.deployment
class ModelServer:
    def __init__(self, registry: str, config: dict):
        import torch

        full = MotioncastConfig.model_validate(config)
        cfg = full.serve
        torch.set_num_threads(max(1, int(cfg.model_cpus)))
        self.registry = Path(registry)
        self.compile = cfg.compile
        self.precision = full.forecast.precision
        self.stores = full.stores
        self.promoted = PromotedModel(
            self.registry, self._load, cfg.poll_seconds, cfg.retry_max_seconds
        )
        self._refresh()  # never raises: the service starts without a loadable model
        self._poller = threading.Thread(
            target=self._poll, args=(cfg.poll_seconds,), daemon=True, name="registry-poll"
        )
        self._poller.start()
        self.forecast.set_max_batch_size(cfg.max_batch_size)
        self.forecast.set_batch_wait_timeout_s(cfg.batch_wait_ms / 1000.0)

    def _load(self):
        """The promoted version, loaded and warmed up (not yet in service)."""
        from pipelines.nowcast.model import ModelNowcaster

        loaded = ModelNowcaster.from_registry(
            self.registry, compile_step=self.compile, precision=self.precision
        )
        self._warm_up(loaded)
        return loaded

    def _refresh(self) -> None:
        """Follow the registry's promotion (``PromotedModel.refresh``): at start, then from
        the poll thread only."""
        try:
            self.promoted.refresh()
        except Exception as exc:  # not loading (that is caught there): keep serving
            log.warning("looking for a promoted model failed (%s)", error_line(exc))

    def _warm_up(self, forecaster) -> None:
        """One forecast on each archive domain's grid before the model serves: the first
        live forecast then runs at full speed (a compiled step compiles here, ~12 s on CPU)."""
        from pipelines.store.archive import Archive, ArchiveError

        start = time.perf_counter()
        try:
            archive = Archive.from_config(self.stores)
            shapes = {tuple(s.grid.shape) for s in archive.summary()}
        except ArchiveError as exc:  # no archive yet: the first forecast warms up instead
            log.info("no warm-up: %s", exc)
            return
        # compiled: a batch of 2 as well, which makes the batch axis dynamic (torch.compile
        # recompiles once for a second size, then serves every size with that graph)
        sizes = (1, 2) if self.compile else (1,)
        for shape, size in itertools.product(sorted(shapes), sizes):
            forecaster.batch([np.zeros((forecaster.frames_in, *shape), np.float32)] * size, 2)
        log.info(
            "model %s warmed up on %d grids in %.1f s",
            forecaster.version,
            len(shapes),
            time.perf_counter() - start,
        )

    def _poll(self, seconds: float) -> None:
        while True:
            time.sleep(seconds)
            self._refresh()

    def version(self) -> str | None:
        return self.promoted.version()

    def model_status(self) -> dict[str, str | None]:
        """The version in service (None: none) and why a promoted one is not (None: no
        failure)."""
        return self.promoted.status()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def forecast(self, requests: list[tuple[np.ndarray, int]]) -> list:
        """[(frames (T, H, W), n_out)] -> [(values (n_out, H, W), version)]; one model call
        per grid size and lead count. With no model in service, [(None, why)]: the caller
        raises NoModelError (raised here, Ray would log a traceback per request)."""
        forecaster = self.promoted.forecaster  # one version for the whole batch, even a swap
        if forecaster is None:
            return [(None, self.promoted.unavailable())] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, (frames, n_out) in enumerate(requests):
            groups.setdefault((frames.shape, n_out), []).append(i)
        out: list = [None] * len(requests)
        for (_, n_out), members in groups.items():
            values = await asyncio.to_thread(
                forecaster.batch, [requests[i][0] for i in members], n_out
            )
            for i, v in zip(members, values, strict=True):
                out[i] = (v, forecaster.version)
        return out
