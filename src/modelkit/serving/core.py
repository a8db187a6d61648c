"""The framework-neutral serving core: (method, path, headers, body) → (status, headers, body).

:class:`App` holds the served models and answers :class:`Request` records with
:class:`Response` records. Routing, content encodings, the three wire protocols, validation,
error mapping, readiness and metrics all live here once; the WSGI and ASGI adapters only move
bytes between their server and :meth:`App.handle`::

    app = App(model, "fraud@production", max_body_size=8 * 2**20)
    app.start()                     # resolve registry URIs, verify hashes, load
    app.handle(Request("POST", "/predict", headers={"content-type": "application/json"},
                       body=b'{"features": [[0.1, 2.0]]}'))

The application goes through the states ``loading`` → ``ready`` → ``draining`` →
``stopped`` (or ``failed`` when loading raised). Prediction and model routes answer 503 with
``Retry-After`` unless it is ``ready``; ``/healthz`` answers 200 in every state.

Requests are authenticated here too, once for every adapter, when authenticators are
configured (:mod:`modelkit.serving.auth`); predictions are recorded for delayed labels
(``POST /feedback``) when the application has a registry (:mod:`modelkit.serving.feedback`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.exceptions import (
    DataError,
    NotFoundError,
    SignatureError,
    UnsupportedModelError,
)
from modelkit.serving._http import (
    DEFAULT_MAX_BODY_SIZE,
    JSON_TYPE,
    HTTPError,
    ServingError,
    accepts_gzip,
    decode_body,
    dumps,
    gzip_body,
)
from modelkit.serving._loading import (
    DEFAULT_BATCHING,
    batching_options,
    check_sources,
    describe,
    load_models,
    open_registry,
)
from modelkit.serving._records import (
    Handler,
    Request,
    Response,
    Route,
    ServedModel,
    request_id,
)
from modelkit.serving.auth import Authentication, AuthOption, build_authentication
from modelkit.serving.batching import (
    AsyncBatcher,
    BatchOptions,
    Call,
    Outcome,
    ThreadBatcher,
    Work,
)
from modelkit.serving.metrics import CONTENT_TYPE as METRICS_TYPE
from modelkit.serving.metrics import Metrics

if TYPE_CHECKING:
    from modelkit.model import Model
    from modelkit.registry import Registry
    from modelkit.serving.feedback import PredictionRecorder
    from modelkit.serving.monitoring import MonitorOption, MonitorOptions, ServingMonitor
    from modelkit.serving.swap import ModelWatcher

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "STATES",
    "App",
    "BatchOptions",
    "Call",
    "Exchange",
    "HTTPError",
    "Request",
    "Response",
    "Route",
    "ServedModel",
    "ServingError",
]

logger = logging.getLogger("modelkit.serving")

STATES = ("loading", "ready", "draining", "stopped", "failed")
"""The states of an :class:`App`, in the order it goes through them."""

_UNMATCHED = "unmatched"


@attrs.define(eq=False)
class Exchange:
    """One request on its way through :meth:`App.begin`, :meth:`App.complete`, :meth:`App.end`."""

    request: Request
    started: float
    template: str = _UNMATCHED
    label: str = ""
    timeout: float | None = None
    decoded: float = 0.0
    work: Work | None = None
    response: Response | None = None

    @property
    def head(self) -> bool:
        """Whether the request is a HEAD (answered like GET, without a body)."""
        return self.request.method == "HEAD"


def default_routes() -> tuple[Route, ...]:
    """Every route modelkit serves: health, metrics, OpenAPI, the three protocols, feedback."""
    from modelkit.serving import _v2, codecs, feedback, swap

    def get(template: str, handler: Handler, summary: str, *, models: bool = False) -> Route:
        return Route("GET", template, handler, summary, models)

    def post(template: str, handler: Handler, summary: str) -> Route:
        return Route("POST", template, handler, summary, models=True)

    return (
        get("/healthz", _healthz, "Liveness: 200 while the process serves requests"),
        get("/readyz", _readyz, "Readiness: 200 when models are loaded, else 503"),
        get("/metrics", _metrics, "Prometheus metrics (text exposition format 0.0.4)"),
        get("/openapi.json", _openapi, "This API as an OpenAPI 3.1 document"),
        post("/predict", codecs.predict, "Predict rows (the seed protocol)"),
        post("/invocations", codecs.invocations, "Predict rows (MLflow scoring protocol)"),
        get("/ping", codecs.ping, "MLflow health check", models=True),
        get("/health", codecs.ping, "MLflow health check (same as /ping)", models=True),
        get("/version", codecs.version, "The modelkit version (MLflow protocol)"),
        get("/v2", _v2.server_metadata, "Open Inference Protocol: server metadata"),
        get("/v2/", _v2.server_metadata, "Open Inference Protocol: server metadata"),
        get("/v2/health/live", _v2.live, "Open Inference Protocol: server liveness"),
        get("/v2/health/ready", _v2.ready, "Open Inference Protocol: server readiness"),
        get("/v2/models/{name}", _v2.model_metadata, "Model metadata", models=True),
        get(
            "/v2/models/{name}/versions/{version}",
            _v2.model_metadata,
            "Model metadata (one version)",
            models=True,
        ),
        get("/v2/models/{name}/ready", _v2.model_ready, "Model readiness"),
        get(
            "/v2/models/{name}/versions/{version}/ready",
            _v2.model_ready,
            "Model readiness (one version)",
        ),
        post("/v2/models/{name}/infer", _v2.infer, "Open Inference Protocol: inference"),
        post(
            "/v2/models/{name}/versions/{version}/infer",
            _v2.infer,
            "Open Inference Protocol: inference (one version)",
        ),
        post("/feedback", feedback.feedback, "Delayed labels for earlier predictions, by id"),
        Route(
            "POST",
            "/admin/reload",
            swap.reload,
            "Load the versions the served aliases now point to, and swap them in",
        ),
    )


# -- the application -------------------------------------------------------------------------


@attrs.define(init=False, repr=False)
class App:
    """The served models and everything needed to answer requests for them.

    ``models``: each a :class:`~modelkit.Model` (it must have a name), a registry URI
    (``"churn@production"``, ``"fraud/7"``, ``"models:/churn/3"``), or a mapping of served
    name to either; ``named`` gives more as ``name=model``. The first model is the default
    of ``/predict`` and ``/invocations`` (``?model=NAME`` selects another); the Open
    Inference Protocol selects by path. URIs are resolved, hash-verified and loaded by
    :meth:`start` through ``registry`` (a :class:`~modelkit.Registry`, a registry URL, or
    ``None`` for the default ``Registry()``); a registry opened here is closed afterwards.

    ``max_body_size`` bounds request bodies, after decompression (413 beyond);
    ``retry_after`` is the ``Retry-After`` of 503 answers, in seconds; ``drain_timeout``
    how long :meth:`drain` waits for requests in flight; responses of at least
    ``compress_min_size`` bytes are gzipped for clients that accept it (``None``: never).

    ``auth`` chooses the authenticators (default: those the environment configures, e.g.
    ``MODELKIT_API_KEYS``; ``False``: none) and ``public_routes`` the route templates left
    open (default: health, readiness and metrics); see :mod:`modelkit.serving.auth`.
    ``feedback`` records every prediction id in the registry's database for ``POST
    /feedback``, keeping records ``feedback_retention_days`` days (``None``: forever); it
    needs a registry: registry URIs among the models, or an explicit ``registry``.

    Requests are micro-batched (:mod:`modelkit.serving.batching`): ``batching`` is ``True``
    (the default :class:`BatchOptions`), ``False`` (each request computed alone), a
    :class:`BatchOptions`, or a mapping of model name (``"*"`` for the others) to either.
    Every computed response carries a ``Server-Timing`` header (queue, batch, model, codec).

    Models served from a registry alias (``"churn@production"``) follow it: every ``watch``
    seconds (``None``: only when asked, by ``SIGHUP`` or ``POST /admin/reload``) the alias is
    resolved again and, when it has moved, the new version is loaded, verified and warmed up
    in the background, then swapped in atomically (see :mod:`modelkit.serving.swap`).

    ``monitor`` watches every batch for drift, performance from labels, and health (see
    :mod:`modelkit.serving.monitoring`; ``False``: off), tuned by ``monitor_options``;
    ``record_inputs`` records each prediction's input rows with it.
    """

    sources: tuple[tuple[str | None, Model | str], ...]
    registry: Registry | str | None
    max_body_size: int
    retry_after: int
    drain_timeout: float
    compress_min_size: int | None
    metrics: Metrics
    routes: tuple[Route, ...]
    _models: dict[str, ServedModel]
    _state: str
    _error: str | None
    _cond: threading.Condition
    _start_lock: threading.Lock
    _in_flight: int
    _cache: dict[str, Any]
    authentication: Authentication
    feedback: bool
    feedback_retention_days: float | None
    recorder: PredictionRecorder | None
    request_timeout: float | None
    watch: float | None
    watcher: ModelWatcher | None
    batching: BatchOptions | Mapping[str, BatchOptions]
    _arriving: int
    _drain_began: float = attrs.field(init=False, default=math.inf)
    _static: dict[tuple[str, str], Route] = attrs.field(init=False)
    thread_batcher: ThreadBatcher = attrs.field(init=False)
    async_batcher: AsyncBatcher = attrs.field(init=False)
    monitoring: ServingMonitor | None = attrs.field(init=False, default=None)
    record_inputs: bool = attrs.field(init=False, default=True)

    def __init__(
        self,
        *models: Model | str | Mapping[str, Model | str],
        registry: Registry | str | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        retry_after: int = 5,
        drain_timeout: float = 30.0,
        compress_min_size: int | None = 1024,
        auth: AuthOption = None,
        public_routes: Iterable[str] | None = None,
        feedback: bool = True,
        feedback_retention_days: float | None = 30.0,
        request_timeout: float | None = None,
        watch: float | None = None,
        batching: bool | BatchOptions | Mapping[str, bool | BatchOptions] = True,
        monitor: MonitorOption = True,
        monitor_options: MonitorOptions | None = None,
        record_inputs: bool = True,
        **named: Model | str,
    ) -> None:
        """Check the model list and the options; nothing is loaded until :meth:`start`.

        An ``auth`` option that cannot be honoured (an authenticator that is required but
        not configured, a key file that cannot be read) raises
        :class:`~modelkit.exceptions.ServingError` here.
        """
        sources = check_sources(models, named)
        if max_body_size < 1:
            raise ServingError(
                f"max_body_size must be a positive number of bytes, got {max_body_size}"
            )
        if feedback_retention_days is not None and not feedback_retention_days > 0:
            raise ServingError(
                "feedback_retention_days must be a positive number of days or None (keep "
                f"forever), got {feedback_retention_days!r}"
            )
        if request_timeout is not None and not request_timeout > 0:
            raise ServingError(
                f"request_timeout must be a positive number of seconds or None, got "
                f"{request_timeout!r}"
            )
        if watch is not None and not watch > 0:
            raise ServingError(
                f"watch must be a positive number of seconds between registry polls or None, "
                f"got {watch!r}"
            )
        routes = default_routes()
        authentication = build_authentication(
            auth, public=public_routes, known_routes=[route.template for route in routes]
        )
        self.__attrs_init__(
            sources,
            registry,
            int(max_body_size),
            int(retry_after),
            float(drain_timeout),
            compress_min_size,
            Metrics(),
            routes,
            {},
            "loading",
            None,
            threading.Condition(),
            threading.Lock(),
            0,
            {},
            authentication,
            bool(feedback),
            feedback_retention_days,
            None,
            None if request_timeout is None else float(request_timeout),
            None if watch is None else float(watch),
            None,
            batching_options(batching),
            0,
        )
        self._static = {
            (route.method, route.template): route for route in routes if "{" not in route.template
        }
        self.thread_batcher = ThreadBatcher(self, self.batch_options)
        self.async_batcher = AsyncBatcher(self, self.batch_options)
        from modelkit.serving.monitoring import ServingMonitor

        self.monitoring = ServingMonitor.build(monitor, monitor_options)
        self.record_inputs = bool(record_inputs)

    def __repr__(self) -> str:
        """``App(state='ready', models=['seed', 'churn'])``."""
        names = list(self._models) or [
            name or (source if isinstance(source, str) else str(source.name))
            for name, source in self.sources
        ]
        return f"App(state={self._state!r}, models={names!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``loading``, ``ready``, ``draining``, ``stopped`` or ``failed``."""
        return self._state

    @property
    def in_flight(self) -> int:
        """How many requests :meth:`handle` is answering right now."""
        return self._in_flight

    @property
    def models(self) -> Mapping[str, ServedModel]:
        """The served models by name, in order (empty until :meth:`start` has run)."""
        return dict(self._models)

    @property
    def default(self) -> ServedModel:
        """The first served model: what ``/predict`` uses without ``?model=``."""
        self._require_ready()
        return next(iter(self._models.values()))

    def start(self) -> None:
        """Resolve, verify and load every model; then accept predictions.

        Idempotent once ready. Errors (an unknown URI, an artifact whose hash does not
        match the registry, two models with one name) propagate, and the application
        stays ``failed``.
        """
        with self._start_lock:  # not the request lock: requests get a 503 meanwhile
            if self._state != "loading":
                if self._state == "failed":
                    raise ServingError(f"this application failed to start: {self._error}")
                return
            opened: Registry | None = None
            try:
                opened = self._feedback_registry()
                served = load_models(self.sources, self.registry if opened is None else opened)
            except BaseException as exc:
                self._state, self._error = "failed", f"{type(exc).__name__}: {exc}"
                if opened is not None and opened is not self.registry:
                    opened.close()
                raise
            if opened is not None:
                from modelkit.serving.feedback import make_recorder

                self.recorder = make_recorder(self, opened)
            if self.monitoring is not None:
                self.monitoring.start(self, served, opened or self.registry)
            self._models = served
            for entry in served.values():
                self.metrics.describe_model(
                    entry.name,
                    version=entry.version,
                    uri=entry.uri,
                    sha256=entry.sha256,
                    load_seconds=entry.load_seconds,
                )
            self._state = "ready"
            self._cache.clear()
            self.metrics.set_ready(True)
            if any(isinstance(item, str) for _, item in self.sources):
                from modelkit.serving.swap import ModelWatcher

                self.watcher = ModelWatcher(self, interval=self.watch)
                self.watcher.start()
        logger.info("serving %s", ", ".join(describe(m) for m in served.values()))

    def swap(self, served: ServedModel) -> ServedModel:
        """Serve ``served`` in place of the model of the same name; return the one replaced.

        Atomic: a request (or a batch of requests) computed before the swap is answered by
        the old model entirely, one after it by the new one entirely, and every response
        names the version that computed it. Raises
        :class:`~modelkit.exceptions.NotFoundError` for a name that is not served here.
        """
        with self._cond:
            old = self._models.get(served.name)
            if old is None:
                known = ", ".join(repr(n) for n in self._models)
                raise NotFoundError(
                    f"cannot swap {served.name!r}: no model of that name is served here "
                    f"(serving: {known})"
                )
            if served.model.name != served.name:
                served = attrs.evolve(served, model=attrs.evolve(served.model, name=served.name))
            models = dict(self._models)
            models[served.name] = served
            self._models = models  # one reference assignment: readers see old or new
            self._cache.clear()
        self.metrics.describe_model(
            served.name,
            version=served.version,
            uri=served.uri,
            sha256=served.sha256,
            load_seconds=served.load_seconds,
        )
        logger.info("now serving %s in place of %s", describe(served), describe(old))
        if self.monitoring is not None:
            self.monitoring.swapped(old, served)
        return old

    def begin_drain(self) -> None:
        """Stop accepting predictions (readiness turns 503); requests in flight go on."""
        with self._cond:
            if self._state in {"loading", "ready"}:
                self._state = "draining"
                self._drain_began = time.perf_counter()
            self.metrics.set_ready(False)

    def drain(self, timeout: float | None = None) -> bool:
        """Stop accepting predictions and wait for the requests in flight; then stop.

        Waits at most ``timeout`` seconds (default: ``drain_timeout``); returns whether every
        request finished in time.
        """
        self.begin_drain()
        limit = self.drain_timeout if timeout is None else timeout
        with self._cond:
            done = self._cond.wait_for(lambda: self._in_flight == 0, timeout=limit)
            if self._state == "draining":
                self._state = "stopped"
        if not done:
            logger.warning("stopped with %d requests still in flight", self._in_flight)
        if self.watcher is not None and self._state == "stopped":
            self.watcher.stop()
        if self._state == "stopped":
            self.async_batcher.close()
        if self.recorder is not None and self._state == "stopped":
            self.recorder.close(timeout=limit)
        if self.monitoring is not None and self._state == "stopped":
            self.monitoring.close(timeout=limit)
        return done

    # -- requests ----------------------------------------------------------------------------

    def check_length(self, headers: Mapping[str, str]) -> HTTPError | None:
        """The error for a declared Content-Length that is invalid or too large, if any.

        Adapters call this before reading the body, so that an oversized body is refused
        without being read.
        """
        raw = headers.get("content-length")
        if raw is None:
            return None
        try:
            length = int(raw)
        except ValueError:
            return HTTPError(400, f"invalid Content-Length header {raw!r}")
        if length < 0:
            return HTTPError(400, f"invalid Content-Length header {raw!r}")
        if length > self.max_body_size:
            return self.too_large()
        return None

    def too_large(self) -> HTTPError:
        """The 413 error for a body over ``max_body_size``."""
        return HTTPError(
            413, f"request body is larger than {self.max_body_size} bytes (the server's limit)"
        )

    def handle(
        self,
        request: Request,
        *,
        error: HTTPError | None = None,
        accepted: float | None = None,
    ) -> Response:
        """Answer one request; never raises.

        ``error`` is a failure the adapter already found (a body over the limit, a broken
        upload): the request is routed, then answered with that error. ``accepted`` is when
        the server accepted the request's connection (``time.perf_counter()``), if it
        knows: a request accepted before a drain began is still answered during the drain.
        Model work is computed in this thread, batched with the other threads' requests.
        """
        exchange = self.begin(request, error=error, accepted=accepted)
        work = exchange.work
        if work is not None:
            try:
                outcome: Outcome | BaseException = self.thread_batcher.run(work)
            except Exception as exc:
                outcome = exc
            self.complete(exchange, outcome)
        return self.end(exchange)

    def begin(
        self,
        request: Request,
        *,
        error: HTTPError | None = None,
        accepted: float | None = None,
    ) -> Exchange:
        """Route, authenticate and decode ``request``: the first half of :meth:`handle`.

        The exchange holds the response, or the :class:`~modelkit.serving.batching.Work` to
        compute first (then :meth:`complete`); :meth:`end` must follow in every case.
        Adapters that batch asynchronously call these three instead of :meth:`handle`.
        """
        if not request.id:
            request = attrs.evolve(request, id=request_id(request.headers))
        exchange = Exchange(request, time.perf_counter())
        request = exchange.request
        with self._cond:
            self._in_flight += 1
            self._arriving += 1
        try:
            route, params = self._match("GET" if exchange.head else request.method, request.path)
            exchange.template = route.template
            exchange.label = self._label(route, params, request)
            if self.authentication.protects(route.template):
                request = attrs.evolve(request, identity=self.authentication.check(request))
            if error is not None:
                raise error
            if route.models:
                self._require_ready(accepted)
            if route.method == "POST":
                body = decode_body(request.body, request.headers, self.max_body_size)
                if body is not request.body:
                    request = attrs.evolve(request, body=body)
                exchange.timeout = self.deadline(request)
            exchange.request = request
            result = route.handler(self, request, params)
        except Exception as exc:  # every failure becomes an error response
            result = self._failure(exc, request)
        finally:
            with self._cond:
                self._arriving -= 1
        exchange.decoded = time.perf_counter()
        if isinstance(result, Call):
            timeout = exchange.timeout
            deadline = None if timeout is None else exchange.started + timeout
            exchange.work = Work(result, deadline, timeout)
        else:
            exchange.response = result
        return exchange

    def complete(self, exchange: Exchange, outcome: Outcome | BaseException) -> None:
        """Turn the outcome of the exchange's work (or its failure) into its response."""
        assert exchange.work is not None
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            response = exchange.work.call.finish(outcome)
            timeout = exchange.timeout
            if timeout is not None and time.perf_counter() - exchange.started > timeout:
                raise self.deadline_exceeded(timeout)
        except Exception as exc:
            response = self._failure(exc, exchange.request)
        exchange.response = response

    def end(self, exchange: Exchange) -> Response:
        """Finish the response (encoding, headers, timings), count it, release the request."""
        request = exchange.request
        try:
            response = exchange.response
            if response is None:  # pragma: no cover - begin/complete always set one
                response = Response.error(500, "the request was not answered")
            stages = self._stages(exchange)
            extra = () if stages is None else [("server-timing", _server_timing(stages, exchange))]
            response = self._finish(response, request, head=exchange.head, extra=extra)
        finally:
            with self._cond:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._cond.notify_all()
        work, seconds = exchange.work, time.perf_counter() - exchange.started
        self.metrics.observe(
            exchange.template,
            exchange.label,
            response.status,
            seconds,
            stages=stages,
            batch_size=0 if work is None else work.batch_size,
        )
        return response

    @staticmethod
    def _stages(exchange: Exchange) -> dict[str, float] | None:
        """Where a computed request's time went: queue, batch, model, codec (seconds)."""
        work = exchange.work
        if work is None or work.started_at is None:
            return None
        queue, batch, model = work.queue_seconds, work.batch_seconds, work.model_seconds
        total = time.perf_counter() - exchange.started
        codec = max(0.0, total - queue - batch - model)
        return {"queue": queue, "batch": batch, "model": model, "codec": codec}

    def serving(self, name: str) -> ServedModel:
        """The model served as ``name`` right now (what a batch computes with)."""
        served = self._models.get(name)
        if served is None:
            raise HTTPError(404, f"no model named {name!r} is served here")
        return served

    @property
    def arriving(self) -> int:
        """Requests between arrival and their call's queue: more batch work on its way."""
        return self._arriving

    def overloaded(self) -> HTTPError:
        """The 503 for a request whose model's queue is full."""
        return HTTPError(
            503,
            "the server is overloaded: too many requests are waiting for this model; retry "
            "shortly (see Retry-After)",
            headers=[("retry-after", str(self.retry_after))],
        )

    def batch_options(self, name: str) -> BatchOptions:
        """How requests for model ``name`` are batched."""
        options = self.batching
        if isinstance(options, BatchOptions):
            return options
        return options.get(name) or options.get("*") or DEFAULT_BATCHING

    def deadline(self, request: Request) -> float | None:
        """Seconds ``request`` may take: the smaller of ``request_timeout`` and the client's
        ``X-Request-Timeout`` header (``None``: no deadline).

        A header that is not a positive number of seconds is a 400.
        """
        raw = request.headers.get("x-request-timeout")
        if raw is None:
            return self.request_timeout
        try:
            asked = float(raw)
        except ValueError:
            asked = math.nan
        if not asked > 0 or math.isinf(asked):
            raise HTTPError(
                400, f"X-Request-Timeout must be a positive number of seconds, got {raw!r}"
            )
        return asked if self.request_timeout is None else min(asked, self.request_timeout)

    def deadline_exceeded(self, timeout: float) -> HTTPError:
        """The 504 for a request that could not be answered within ``timeout`` seconds."""
        return HTTPError(
            504,
            f"the request could not be answered within its deadline of {timeout:g}s; its "
            "answer was dropped. Retry later, or allow more time with X-Request-Timeout",
        )

    def timed_out(self, request: Request, timeout: float) -> Response:
        """Answer ``request`` with a 504 now (for adapters that stop waiting on their own).

        Give ``request`` its ``id`` first, and hand :meth:`handle` the same request, so that
        the 504 and the log of the abandoned computation name the same request id.
        """
        response = self._finish(
            self._failure(self.deadline_exceeded(timeout), request), request, head=False
        )
        self.metrics.observe(_UNMATCHED, "", response.status, timeout)
        return response

    def model(self, name: str, version: str | None = None) -> ServedModel:
        """The served model ``name`` (and ``version``, when given), or a 404."""
        served = self._models.get(name)
        if served is None:
            known = ", ".join(repr(n) for n in self._models)
            raise HTTPError(404, f"no model named {name!r} is served here (serving: {known})")
        if version is not None and version != served.version:
            have = "no version" if served.version is None else f"version {served.version!r}"
            raise HTTPError(
                404,
                f"model {name!r} has no version {version!r} here: it is served with {have}",
            )
        return served

    def select(self, request: Request) -> ServedModel:
        """The model ``?model=NAME`` names, else the default (first) model."""
        name = request.param("model")
        return self.default if name is None else self.model(name)

    def record_prediction(
        self,
        served: ServedModel,
        prediction_id: str,
        rows: int,
        outputs: Any = None,
        inputs: Any = None,
    ) -> None:
        """Record a prediction for ``POST /feedback`` (a no-op without a registry).

        ``outputs`` is the ``predict`` result, or ``None`` when it was not computed; ``inputs``
        the rows the model was given. Never blocks and never raises: the record is written
        by a background thread.
        """
        if self.recorder is not None:
            self.recorder.record(served, prediction_id, rows, outputs, inputs)

    def feedback_unavailable(self) -> str:
        """Why this application does not take ``POST /feedback``."""
        if not self.feedback:
            return "this server does not record feedback (it was started with feedback=False)"
        return (
            "this server does not record feedback: its models were passed in-process and no "
            "registry was given; serve registry models (e.g. 'churn@production') or pass "
            "registry=... to record predictions and their labels"
        )

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """A value computed once per loaded model set (metadata, the OpenAPI document)."""
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = build()
        return value

    def unavailable(self) -> HTTPError:
        """The 503 error describing why predictions are refused in the current state."""
        if self._state == "loading":
            message = "the server is loading its models; retry shortly"
        elif self._state == "failed":
            message = f"the server could not load its models ({self._error}); see its log"
        else:
            message = "the server is shutting down; retry on another instance"
        return HTTPError(503, message, headers=[("retry-after", str(self.retry_after))])

    # -- internals ---------------------------------------------------------------------------

    def _require_ready(self, accepted: float | None = None) -> None:
        if self._state == "ready":
            return
        if self._state == "draining" and accepted is not None and accepted < self._drain_began:
            return  # its connection was accepted before the drain: it is answered
        raise self.unavailable()

    def _feedback_registry(self) -> Registry | None:
        """The registry predictions are recorded in, opened if need be (``None``: none)."""
        if not self.feedback:
            return None
        if self.registry is None and all(not isinstance(item, str) for _, item in self.sources):
            return None
        return open_registry(self.registry)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        route = self._static.get((method, path))
        if route is not None:  # most requests: a path without parameters
            return route, {}
        allowed: list[str] = []
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict()
            allowed.append(route.method)
        if not allowed:
            raise HTTPError(404, f"no route {path!r}; GET /openapi.json lists every route")
        if "GET" in allowed:
            allowed.append("HEAD")
        allow = ", ".join(sorted(set(allowed)))
        raise HTTPError(
            405,
            f"{method} is not allowed on {path!r} (allowed: {allow})",
            headers=[("allow", allow)],
        )

    def _label(self, route: Route, params: Mapping[str, str], request: Request) -> str:
        if not route.models or self._state != "ready":
            return ""
        name = params.get("name")
        if name is None:
            name = request.param("model") or next(iter(self._models))
        return name if name in self._models else ""

    def _failure(self, exc: Exception, request: Request) -> Response:
        if isinstance(exc, HTTPError):
            return Response.error(exc.status, exc.message, exc.headers)
        if isinstance(exc, SignatureError | UnsupportedModelError | DataError):
            return Response.error(400, str(exc))
        if isinstance(exc, NotFoundError):
            return Response.error(404, str(exc))
        logger.error(
            "request %s (%s %s) failed", request.id, request.method, request.path, exc_info=exc
        )
        return Response.error(
            500,
            f"the model failed on this request (request id {request.id}); "
            "the server log has the details",
        )

    def _finish(
        self,
        response: Response,
        request: Request,
        *,
        head: bool,
        extra: Iterable[tuple[str, str]] = (),
    ) -> Response:
        headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        headers.extend(extra)
        body = response.body
        limit = self.compress_min_size
        if (
            limit is not None
            and len(body) >= limit
            and response.header("content-encoding") is None
            and accepts_gzip(request.headers)
        ):
            body = gzip_body(body)
            headers += [("content-encoding", "gzip"), ("vary", "Accept-Encoding")]
        headers += [("content-length", str(len(body))), ("x-request-id", request.id)]
        return Response(response.status, headers, b"" if head else body)


def _server_timing(stages: dict[str, float], exchange: Exchange) -> str:
    size = 0 if exchange.work is None else exchange.work.batch_size
    return (
        f"queue;dur={stages['queue'] * 1000:.3f}, "
        f'batch;dur={stages["batch"] * 1000:.3f};desc="{size} requests", '
        f"model;dur={stages['model'] * 1000:.3f}, codec;dur={stages['codec'] * 1000:.3f}"
    )


# -- the core's own routes -------------------------------------------------------------------


def _healthz(app: App, request: Request, params: Mapping[str, str]) -> Response:
    return Response.json(200, {"status": "ok", "state": app.state})


def _readyz(app: App, request: Request, params: Mapping[str, str]) -> Response:
    if app.state == "ready":
        return Response.json(200, {"status": "ready", "models": list(app.models)})
    error = app.unavailable()
    return Response.json(503, {"status": app.state, "error": error.message}, error.headers)


def _metrics(app: App, request: Request, params: Mapping[str, str]) -> Response:
    app.metrics.queued = app.thread_batcher.waiting + app.async_batcher.waiting
    app.metrics.in_flight = app.in_flight
    health = "" if app.monitoring is None else app.monitoring.render()
    return Response.text(200, app.metrics.render() + health, METRICS_TYPE)


def _openapi(app: App, request: Request, params: Mapping[str, str]) -> Response:
    from modelkit.serving.openapi import document

    if app.state != "ready":
        return Response.json(200, document(app))
    return Response(
        200, (("content-type", JSON_TYPE),), app.cached("openapi", lambda: dumps(document(app)))
    )
