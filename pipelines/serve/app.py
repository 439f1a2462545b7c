"""The forecast service: a Ray Serve application of two deployments.

- ``ModelServer`` holds the promoted MotionRNN (on a GPU where Ray has one) and batches
  concurrent forecasts of one grid size into one model call (``@serve.batch``). A thread polls
  the registry every ``serve.poll_seconds`` (``PromotedModel`` has the rule): a newly promoted
  version is loaded beside the one in service and then swapped in with one assignment, so no
  request is dropped or fails, and each forecast records the version that made it. A version
  that fails to load leaves the one in service (or none) in place and is tried again later; the
  service starts without a loadable model (model forecasts answer 503 with the reason).
- ``Api``, the HTTP ingress (FastAPI, built in its replica by ``make_api``), on 127.0.0.1 by
  default: ``POST /v1/forecasts`` makes and stores a forecast (``pipelines.forecast.issue``: the
  path of ``motioncast forecast``) and returns its summary; ``GET /v1/forecasts/{domain}/latest``
  the latest stored forecast's summary, or with ``?format=png`` a map; ``GET /healthz``. In
  front of every route, ``RequestGuard``: the bearer token (MOTIONCAST_API_TOKEN or
  ``serve.token_file``), when one is set, on every path but /healthz, before any byte of the body
  is read; then the body, at most ``MAX_BODY_BYTES`` of it read. The OpenAPI schema and docs
  pages (/openapi.json, /docs) exist only with ``serve.docs``.

    handle = start(cfg)            # serve.run on the configured host and port
"""

import asyncio
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.config import MotioncastConfig
from pipelines.errors import error_line
from pipelines.forecast.issue import DeadlineExceeded, ForecastError, issue
from pipelines.forecast.store import ForecastStore, ForecastStoreError
from pipelines.nowcast import MODEL, NoModelError, get_method
from pipelines.plots import Site
from pipelines.registry import Registry
from pipelines.serve.latest import LatestForecasts, NoForecasts, NoSuchLead
from pipelines.store.timeaxis import naive_utc

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096  # a forecast request is a few fields: anything larger is refused (413)
OPEN_PATHS = frozenset({"/healthz"})  # the routes that take no token
RECEIVED = "motioncast.received"  # scope key: time.monotonic() when the request came in
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


# ---- the model replica -------------------------------------------------------------------
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
        if self.deadline is None:
            values, version = response.result()
        else:
            try:
                values, version = response.result(
                    timeout_s=max(0.0, self.deadline - time.monotonic())
                )
            except TimeoutError:
                response.cancel()
                raise ModelTimeout(
                    "deadline passed while the model was forecasting: given up, nothing stored"
                ) from None
        if values is None:  # no model in service; ``version`` says why
            raise NoModelError(version)
        return values, version


def _route_path(scope: Scope) -> str:
    """The path the router matches (``scope["path"]`` less ``root_path``, as Starlette)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (path == root or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class RequestGuard:
    """ASGI middleware in front of every HTTP route, in this order, before the app sees it:

    1. the bearer token (when one is set), on every path but ``open_paths``: 401 with
       ``WWW-Authenticate: Bearer`` before a byte of the body is read;
    2. a Content-Length over ``max_body`` (413) or malformed (400), refused unread;
    3. the body, read through ``receive`` counting the bytes that actually come (a chunked body
       has no length): 413 as soon as they pass ``max_body`` (at most ``max_body`` bytes are
       kept), else the body is handed to the app as one message.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        open_paths: frozenset[str] = OPEN_PATHS,
        max_body: int = MAX_BODY_BYTES,
    ):
        self.app = app
        self.token = None if token is None else token.encode()
        self.open_paths = open_paths
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[RECEIVED] = time.monotonic()
        headers = Headers(scope=scope)
        if not self._authorised(scope, headers.get("authorization")):
            await _refuse(scope, receive, send, 401, "a valid bearer token is required", True)
            return
        length = headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit()):
            await _refuse(scope, receive, send, 400, "malformed Content-Length")
            return
        if length is not None and int(length) > self.max_body:
            await _refuse(scope, receive, send, 413, f"body over {self.max_body} bytes")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _refuse(scope, receive, send, 413, f"body over {self.max_body} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _authorised(self, scope: Scope, header: str | None) -> bool:
        if self.token is None or _route_path(scope) in self.open_paths:
            return True
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            credentials.strip().encode("latin-1"), self.token
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body read already, then the server's messages (e.g. the
    client's disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, bearer: bool = False
) -> None:
    """An error answer from the guard (what is left of the body the server reads and drops)."""
    headers = {"www-authenticate": "Bearer"} if bearer else None
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)


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
        return get_method(method, transform=self.cfg.training.data.transform)

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
