"""The forecast service: a Ray Serve application of two deployments.

- ``ModelServer`` holds the promoted MotionRNN (on a GPU where Ray has one) and batches
  concurrent forecasts of one grid size into one model call (``@serve.batch``). A thread polls
  the registry every ``serve.poll_seconds``: a newly promoted version is loaded beside the one in
  service and then swapped in with one assignment, so no request is dropped or fails, and each
  forecast records the version that made it.
- ``Api``, the HTTP ingress (FastAPI, so it has an OpenAPI schema at /openapi.json), on
  127.0.0.1 by default: ``POST /v1/forecasts`` makes and stores a forecast
  (``pipelines.forecast.issue``: the path of ``motioncast forecast``) and returns its summary;
  ``GET /v1/forecasts/{domain}/latest`` the latest stored forecast's summary, or with
  ``?format=png`` a map; ``GET /healthz``. Every route but /healthz takes the bearer token when
  one is set (``serve.token`` or MOTIONCAST_API_TOKEN).

    handle = start(cfg)            # serve.run on the configured host and port
"""

import asyncio
import itertools
import logging
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from pipelines.config import MotioncastConfig
from pipelines.forecast.issue import ForecastError, issue
from pipelines.forecast.methods import MODEL, NoModelError, get_forecaster
from pipelines.forecast.store import ForecastStore, ForecastStoreError
from pipelines.frame_select import naive_utc
from pipelines.plots import Site
from pipelines.serve.latest import LatestForecasts, NoForecasts, NoSuchLead

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096  # a forecast request is a few fields: anything larger is refused (413)
PROMOTED = "promoted.json"

api = FastAPI(
    title="motioncast",
    description="Radar precipitation nowcasts: issue a forecast, read the latest one.",
    version="1",
)
bearer = HTTPBearer(auto_error=False)


@api.middleware("http")
async def _limit_body(request: Request, call_next):
    """Refuse oversized bodies before reading them (413), and malformed lengths (400)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            return JSONResponse({"detail": "malformed Content-Length"}, status_code=400)
        if int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
    return await call_next(request)


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    issue_time: datetime | None = Field(
        None, description="Time of the last input frame (UTC); default: the newest complete window."
    )
    method: Literal["motionrnn", "sprog", "extrapolation", "persistence"] | None = Field(
        None, description="Default: forecast.method of the service's configuration."
    )
    replace: bool = Field(False, description="Make it again when already stored.")


class ServedModel:
    """The model deployment as a forecaster (``pipelines.forecast.methods.Forecaster``), for
    code that runs in a worker thread of the ingress."""

    name = MODEL

    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    def __call__(self, frames: np.ndarray, n_out: int) -> tuple[np.ndarray, str]:
        return self.handle.forecast.remote((frames, n_out)).result()


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
        self.archive = full.store
        self.forecaster = None
        self.stamp: int | None = None
        self.refresh()
        self._poller = threading.Thread(
            target=self._poll, args=(cfg.poll_seconds,), daemon=True, name="registry-poll"
        )
        self._poller.start()
        self.forecast.set_max_batch_size(cfg.max_batch_size)
        self.forecast.set_batch_wait_timeout_s(cfg.batch_wait_ms / 1000.0)

    def _promotion_stamp(self) -> int | None:
        try:
            return (self.registry / PROMOTED).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def refresh(self) -> str | None:
        """Load the promoted version if it changed (beside the one in service), then swap."""
        stamp = self._promotion_stamp()
        if stamp == self.stamp:
            return self.version()
        from pipelines.forecast.methods import ModelForecaster

        try:
            loaded = ModelForecaster.from_registry(
                self.registry, compile_step=self.compile, precision=self.precision
            )
        except NoModelError as exc:
            log.warning("%s", exc)
            loaded = None
        if loaded is not None:
            self._warm_up(loaded)
        self.forecaster, self.stamp = loaded, stamp  # the swap: requests from here use it
        log.info("model in service: %s", self.version())
        return self.version()

    def _warm_up(self, forecaster) -> None:
        """One forecast on each archive domain's grid before the model serves: the first
        live forecast then runs at full speed (a compiled step compiles here, ~12 s on CPU)."""
        from pipelines.store.archive import Archive, ArchiveError

        start = time.perf_counter()
        try:
            archive = Archive(self.archive.archive, storage=self.archive.object_storage)
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
            try:
                self.refresh()
            except Exception:  # a half-written registry: keep serving, try again
                log.exception("looking for a promoted model failed")

    def version(self) -> str | None:
        forecaster = self.forecaster
        return forecaster.version if forecaster is not None else None

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def forecast(self, requests: list[tuple[np.ndarray, int]]) -> list:
        """[(frames (T, H, W), n_out)] -> [(values (n_out, H, W), version)]; one model call
        per grid size and lead count."""
        forecaster = self.forecaster  # one version for the whole batch, even across a swap
        if forecaster is None:
            raise NoModelError(f"{self.registry}: no model is promoted")
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


@serve.deployment
@serve.ingress(api)
class Api:
    def __init__(self, model: DeploymentHandle, config: dict):
        self.cfg = MotioncastConfig.model_validate(config)
        self.model = model
        self.token = self.cfg.serve.bearer_token()
        self._forecasts: ForecastStore | None = None
        self._latest_answers: LatestForecasts | None = None
        self._lock = threading.Lock()

    # ---- helpers -------------------------------------------------------------------------
    def _authorise(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self.token is None:
            return
        if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), self.token.encode()
        ):
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    def _archive(self):
        from pipelines.store.archive import Archive, ArchiveError

        try:
            return Archive(self.cfg.store.archive, storage=self.cfg.store.object_storage)
        except ArchiveError as exc:
            raise HTTPException(503, str(exc)) from None

    def _store(self) -> ForecastStore:
        with self._lock:
            if self._forecasts is None:
                f = self.cfg.forecast
                self._forecasts = ForecastStore(
                    f.store,
                    f.chunk_yx,
                    f.compression_level,
                    create=True,
                    storage=self.cfg.store.object_storage,
                )
            return self._forecasts

    def _latest(self) -> LatestForecasts:
        store = self._store()
        with self._lock:
            if self._latest_answers is None:
                sites = [Site(s.name, s.lon, s.lat) for s in self.cfg.plot.sites]
                self._latest_answers = LatestForecasts(store, sites)
            return self._latest_answers

    def _issue(self, request: ForecastRequest) -> tuple[int, dict]:
        f = self.cfg.forecast
        method = request.method or f.method
        archive = self._archive()
        if request.domain not in archive.domains():
            raise HTTPException(404, f"no domain {request.domain!r} in the archive")
        if method == MODEL:
            forecaster = ServedModel(self.model)
        else:
            forecaster = get_forecaster(method, transform=self.cfg.training.data.transform)
        when = request.issue_time
        issue_time = None if when is None else naive_utc(pd.Timestamp(when))
        try:
            done = issue(
                archive,
                self._store(),
                forecaster,
                request.domain,
                f.frames_in,
                f.lead_minutes,
                issue_time,
                request.replace,
            )
        except ForecastError as exc:
            raise HTTPException(422, str(exc)) from None
        except NoModelError as exc:  # raised in the model replica: Ray wraps it, with its trace
            raise HTTPException(503, str(getattr(exc, "cause", exc))) from None
        except ForecastStoreError as exc:
            raise HTTPException(500, str(exc)) from None
        return (201 if done.forecast is not None else 200), done.summary(self._store())

    # ---- routes --------------------------------------------------------------------------
    @api.get("/healthz")
    async def healthz(self) -> dict:
        """Liveness, and the model version in service (null: none promoted)."""
        version = await self.model.version.remote()
        return {"status": "ok", "model_version": version}

    @api.post("/v1/forecasts", status_code=201)
    def create(
        self,
        request: ForecastRequest,
        response: Response,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
    ) -> dict:
        """Make and store a forecast for a domain (201; 200 when that issue time was stored
        already and ``replace`` is false); its summary."""
        self._authorise(credentials)
        status, summary = self._issue(request)
        response.status_code = status
        return summary

    @api.get("/v1/forecasts/{domain}/latest", response_model=None)
    def latest(
        self,
        domain: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=64)],
        format: Literal["json", "png"] = "json",
        lead: Annotated[int | None, Query(ge=1, description="Lead step of the map (png).")] = None,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
    ) -> dict | Response:
        """The latest stored forecast of a domain: its summary, or a map of one lead (png;
        default the last)."""
        self._authorise(credentials)
        try:
            if format == "json":
                return self._latest().summary(domain)
            return Response(self._latest().png(domain, lead), media_type="image/png")
        except NoForecasts as exc:
            raise HTTPException(404, str(exc)) from None
        except NoSuchLead as exc:
            raise HTTPException(422, str(exc)) from None


def build(cfg: MotioncastConfig, num_gpus: float | None = None):
    """The Serve application: the model server (a GPU when Ray has one) and the ingress."""
    import ray

    if num_gpus is None:
        num_gpus = 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) else 0.0
    config = cfg.model_dump(mode="json")
    model = ModelServer.options(
        ray_actor_options={"num_cpus": cfg.serve.model_cpus, "num_gpus": num_gpus},
        max_ongoing_requests=2 * cfg.serve.max_batch_size,  # a batch fills while one runs
    ).bind(str(cfg.forecast.registry), config)
    return Api.options(ray_actor_options={"num_cpus": 0}).bind(model, config)


def start(cfg: MotioncastConfig) -> DeploymentHandle:
    """Run the application on the configured host and port (Ray must be initialised)."""
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    return serve.run(build(cfg), name=cfg.serve.app_name, route_prefix="/")


def app_builder(args: dict):
    """For ``serve run`` / a Serve config file: ``args`` may name a motioncast ``config`` YAML
    and ``overrides`` (a list of 'section.key=value')."""
    from pipelines.config import load_config

    config = args.get("config")
    cfg = load_config(Path(config) if config else None, list(args.get("overrides", [])))
    return build(cfg)
