"""The forecast service: a Ray Serve application of two deployments.

- ``ModelServer`` (``pipelines.serve.replica``) holds the promoted MotionRNN (on a GPU where Ray
  has one) and batches concurrent forecasts of one grid size into one model call
  (``@serve.batch``). A thread polls the registry every ``serve.poll_seconds``
  (``PromotedModel`` has the rule): a newly promoted version is loaded beside the one in service
  and then swapped in with one assignment, so no request is dropped or fails, and each forecast
  records the version that made it. A version that fails to load leaves the one in service (or
  none) in place and is tried again later; the service starts without a loadable model (model
  forecasts answer 503 with the reason).
- ``Api``, the HTTP ingress (FastAPI, built in its replica by ``make_api``), on 127.0.0.1 by
  default: ``POST /v1/forecasts`` makes and stores a forecast (``pipelines.forecast.issue``: the
  path of ``motioncast forecast``) and returns its summary; ``GET /v1/forecasts/{domain}/latest``
  the latest stored forecast's summary, or with ``?format=png`` a map; ``GET /healthz``. In
  front of every route, ``RequestGuard`` (``pipelines.serve.guard``): the bearer token
  (MOTIONCAST_API_TOKEN or ``serve.token_file``), when one is set, on every path but /healthz,
  before any byte of the body is read; then the body, at most ``MAX_BODY_BYTES`` of it read.
  The OpenAPI schema and docs pages (/openapi.json, /docs) exist only with ``serve.docs``.

    handle = start(cfg)            # serve.run on the configured host and port
"""

import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle

from pipelines.config import MotioncastConfig
from pipelines.forecast.issue import DeadlineExceeded, ForecastError, issue
from pipelines.forecast.store import ForecastStore, ForecastStoreError
from pipelines.nowcast import MODEL, NoModelError, from_config
from pipelines.plots import Site
from pipelines.serve.guard import RECEIVED, RequestGuard
from pipelines.serve.latest import LatestForecasts, NoForecasts, NoSuchLead
from pipelines.serve.replica import ModelServer
from pipelines.store.timeaxis import naive_utc

log = logging.getLogger(__name__)

MAX_ERRORS = 10  # validation errors shown in a 422 (each cut short: no request input echoed)


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
    deadline_seconds: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Give the forecast up (504, nothing stored) once this many seconds have "
        "passed since the service received the request.",
    )


# ---- the ingress -------------------------------------------------------------------------
class ModelTimeout(TimeoutError):
    """The model did not answer before the request's deadline: the forecast is given up.
    (Not a ForecastError: ``make_forecast`` takes a forecaster's ValueError for inputs it cannot
    take and says so; this is answered 504 like ``DeadlineExceeded``.)"""


class ServedModel:
    """The model deployment as a forecaster (``pipelines.nowcast.Nowcaster``), for
    code that runs in a worker thread of the ingress; with a ``deadline``
    (``time.monotonic()``) it waits for the model until then, then cancels the call."""

    name = MODEL

    def __init__(self, handle: DeploymentHandle, deadline: float | None = None):
        self.handle = handle
        self.deadline = deadline

    def __call__(
        self, frames: np.ndarray, n_out: int, velocity: np.ndarray | None = None
    ) -> tuple[np.ndarray, str]:
        """The deployment's forecast and the version in service that made it (it computes
        the motion prior itself: ``velocity`` is not sent)."""
        response = self.handle.forecast.remote((frames, n_out))
        timeout_s = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            values, version = response.result(timeout_s=timeout_s)
        except TimeoutError:
            response.cancel()
            raise ModelTimeout(
                "deadline passed while the model was forecasting: given up, nothing stored"
            ) from None
        except RayActorError:  # killed or crashed mid-forecast; Serve starts another
            raise NoModelError(
                "the model's replica died while forecasting (Serve starts a new one): "
                "nothing stored"
            ) from None
        if values is None:  # no model in service; ``version`` says why
            raise NoModelError(version)
        return values, version


def _short(value: object, limit: int = 64) -> object:
    if isinstance(value, int):
        return value
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with each error's location, message and type only: never the input (FastAPI's
    default echoes it, and a request's input may be anything), the whole answer bounded."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": [_short(part) for part in error.get("loc", ())[:8]],
            "msg": _short(error.get("msg", ""), 200),
            "type": _short(error.get("type", "")),
        }
        for error in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        detail.append({"loc": [], "msg": f"and {len(errors) - MAX_ERRORS} more", "type": "more"})
    return JSONResponse({"detail": detail}, status_code=422)


class ForecastService:
    """What the routes do (the FastAPI app of ``make_api`` calls it): forecasts made through
    ``pipelines.forecast.issue`` with the model deployment or a pysteps method, the latest
    stored ones read back. Errors are HTTPExceptions that say why in one line."""

    def __init__(self, cfg: MotioncastConfig, model: DeploymentHandle | None):
        self.cfg = cfg
        self.model = model
        self._forecasts: ForecastStore | None = None
        self._latest_answers: LatestForecasts | None = None
        self._lock = threading.Lock()

    def _archive(self):
        from pipelines.store.archive import Archive, ArchiveError

        try:
            return Archive.from_config(self.cfg.stores)
        except ArchiveError as exc:
            raise HTTPException(503, str(exc)) from None

    def store(self) -> ForecastStore:
        with self._lock:
            if self._forecasts is None:
                self._forecasts = ForecastStore.from_config(self.cfg.stores, create=True)
            return self._forecasts

    def _latest(self) -> LatestForecasts:
        store = self.store()
        with self._lock:
            if self._latest_answers is None:
                sites = [Site(s.name, s.lon, s.lat) for s in self.cfg.plot.sites]
                self._latest_answers = LatestForecasts(store, sites)
            return self._latest_answers

    def forecaster(self, method: str, deadline: float | None):
        if method == MODEL:
            return ServedModel(self.model, deadline)
        return from_config(method, self.cfg)

    async def health(self) -> dict:
        status = await self.model.model_status.remote()
        return {"status": "ok", **status}

    def create(self, request: ForecastRequest, received: float | None = None) -> tuple[int, dict]:
        """Make and store a forecast: (201, its summary), or (200, the summary of the one the
        store holds) when that issue time was stored already, or another writer stored it
        first. With ``deadline_seconds``, given up (504, nothing stored) that long after
        ``received`` (``time.monotonic()``)."""
        received = time.monotonic() if received is None else received
        deadline = None if request.deadline_seconds is None else received + request.deadline_seconds
        f = self.cfg.forecast
        archive = self._archive()
        if request.domain not in archive.domains():
            raise HTTPException(404, f"no domain {request.domain!r} in the archive")
        forecaster = self.forecaster(request.method or f.method, deadline)
        when = request.issue_time
        issue_time = None if when is None else naive_utc(pd.Timestamp(when))
        try:
            done = issue(
                archive,
                self.store(),
                forecaster,
                request.domain,
                f.frames_in,
                f.lead_minutes,
                issue_time,
                request.replace,
                deadline=deadline,
            )
        except (DeadlineExceeded, ModelTimeout) as exc:
            raise HTTPException(504, str(exc).splitlines()[0]) from None
        except ForecastError as exc:
            raise HTTPException(422, str(exc)) from None
        except NoModelError as exc:
            raise HTTPException(503, str(exc)) from None
        except ForecastStoreError as exc:
            raise HTTPException(500, str(exc)) from None
        return (201 if done.stored else 200), done.summary(self.store())

    def latest(self, domain: str, format: str, lead: int | None) -> dict | Response:
        try:
            if format == "json":
                return self._latest().summary(domain)
            return Response(self._latest().png(domain, lead), media_type="image/png")
        except NoForecasts as exc:
            raise HTTPException(404, str(exc)) from None
        except NoSuchLead as exc:
            raise HTTPException(422, str(exc)) from None


# documents the token in the OpenAPI schema; RequestGuard is what checks it
_bearer_scheme = HTTPBearer(
    auto_error=False, description="serve.token_file or MOTIONCAST_API_TOKEN"
)


def make_api(service: ForecastService, token: str | None, docs: bool = False) -> FastAPI:
    """The HTTP API of ``service``: the routes behind ``RequestGuard`` (``token``: None, no
    token), and the OpenAPI schema and docs pages only when ``docs``."""
    api = FastAPI(
        title="motioncast",
        description="Radar precipitation nowcasts: issue a forecast, read the latest one.",
        version="1",
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    api.add_middleware(RequestGuard, token=token)
    api.add_exception_handler(RequestValidationError, _invalid_request)
    secured = [Depends(_bearer_scheme)] if token is not None else []

    @api.get("/healthz")
    async def healthz() -> dict:
        """Liveness, the model version in service (null: none) and, when a promoted version
        is not in service, why (``model_error``)."""
        return await service.health()

    @api.post("/v1/forecasts", status_code=201, dependencies=secured)
    def create(body: ForecastRequest, request: Request, response: Response) -> dict:
        """Make and store a forecast for a domain (201; 200 when that issue time was stored
        already, and ``replace`` is false, or another writer stored it first: the summary of
        the one stored); its summary. 504 when ``deadline_seconds`` passed (nothing stored)."""
        status, summary = service.create(body, request.scope.get(RECEIVED))
        response.status_code = status
        return summary

    @api.get("/v1/forecasts/{domain}/latest", response_model=None, dependencies=secured)
    def latest(
        domain: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=64)],
        format: Literal["json", "png"] = "json",
        lead: Annotated[int | None, Query(ge=1, description="Lead step of the map (png).")] = None,
    ) -> dict | Response:
        """The latest stored forecast of a domain: its summary, or a map of one lead (png;
        default the last)."""
        return service.latest(domain, format, lead)

    return api


@serve.deployment
@serve.ingress()
class Api:
    """The HTTP ingress. Its FastAPI app is built in the replica (``make_api``) from the
    configuration: the token read once, here; the docs routes only with ``serve.docs``."""

    def __init__(self, model: DeploymentHandle, config: dict):
        cfg = MotioncastConfig.model_validate(config)
        self.service = ForecastService(cfg, model)
        self.token = cfg.serve.bearer_token()

    def __serve_build_asgi_app__(self) -> FastAPI:
        return make_api(self.service, self.token, self.service.cfg.serve.docs)


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
