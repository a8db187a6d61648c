"""Hot model swap: served aliases are followed, new versions swapped in without a dropped request.

A model served from a registry alias (``"churn@production"``, or a bare name meaning the
latest version) follows it. :class:`ModelWatcher` resolves every such alias again (every
``watch`` seconds, on ``SIGHUP``, or on ``POST /admin/reload``); for each that moved it loads
the exact new version through the registry (every file's hash checked against the
registry's record), warms it up on the artifact's input example, and only then swaps it in
with :meth:`App.swap <modelkit.serving.App.swap>`. A request is answered entirely by the old
version or entirely by the new one, and its response names that version. A version that
cannot be loaded, or whose warm-up raises, is refused: the old one keeps serving, the error
is logged and counted (:attr:`ModelWatcher.failures`). A pinned version (``"fraud/7"``) never
moves::

    POST /admin/reload          (authenticated: Authorization: Bearer <key>)
    200 {"changed": true, "models": [{"model": "churn", "uri": "churn@production",
         "old_version": "3", "new_version": "4", "outcome": "swapped", ...}]}

Loading happens in the thread that asked (the polling thread, a background thread started
by ``SIGHUP``, or the admin request's own thread), never in a request that predicts; one
reload runs at a time. The watcher opens its own registry connections, and it survives
``fork``: a forked child (a gunicorn worker) gets a fresh lock and, unless
:attr:`ModelWatcher.follow_after_fork` is false, its own polling thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.serving._loading import own_registry
from modelkit.serving.core import Response, ServedModel

if TYPE_CHECKING:
    from modelkit.registry import Registry
    from modelkit.serving.core import App, Request

__all__ = ["OUTCOMES", "ModelWatcher", "Reload", "reload"]

logger = logging.getLogger("modelkit.serving")

OUTCOMES = ("unchanged", "swapped", "refused")
"""What a check did for one followed model: nothing moved, the new version serves now, or
the new version could not be loaded or warmed up (the old one keeps serving)."""

_STOP_TIMEOUT = 5.0  # seconds stop() waits for the polling thread and a reload in progress


@attrs.frozen
class Reload:
    """What one check did for one served model that follows an alias.

    ``old_version`` is the version served before the check, ``new_version`` the one the
    alias points to now (``None`` when it could not be resolved); ``outcome`` is one of
    :data:`OUTCOMES`; ``error`` says why a version was refused; ``seconds`` is the time taken
    to load, verify and warm up the new version.
    """

    model: str
    uri: str
    old_version: str | None
    new_version: str | None
    outcome: str = attrs.field(validator=attrs.validators.in_(OUTCOMES))
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values."""
        return attrs.asdict(self)


def follows(uri: str | None) -> bool:
    """Whether a served model's source URI can move: an alias or the latest version.

    ``None`` (a model passed in-process) and a pinned version (``"fraud/7"``) never move.
    """
    if uri is None:
        return False
    from modelkit.registry import parse_model_uri

    return parse_model_uri(uri).version is None


# -- fork: every live watcher is told in the child -------------------------------------------

_WATCHERS: weakref.WeakSet[ModelWatcher] = weakref.WeakSet()
_FORK_HOOK: list[bool] = []  # registered once, on the first start()


def _after_fork_in_child() -> None:
    for watcher in list(_WATCHERS):
        watcher._after_fork()


def _track(watcher: ModelWatcher) -> None:
    if not _FORK_HOOK and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _FORK_HOOK.append(True)
    _WATCHERS.add(watcher)


# -- the watcher -----------------------------------------------------------------------------


@attrs.define(repr=False, eq=False)
class ModelWatcher:
    """Follows the registry aliases an :class:`~modelkit.serving.App` serves, and swaps.

    ``interval``: seconds between two checks by a background (daemon) thread, or ``None`` to
    check only when :meth:`check_now` is called. ``on_swap`` is called with the records of a
    check that swapped at least one model, in the thread that ran it (the gunicorn backend
    uses it to re-fork its workers from the updated master). ``follow_after_fork``: whether a
    forked child starts its own polling thread.

    Counters (read them any time): ``checks`` (checks run), ``swaps`` (versions swapped in),
    ``failures`` (versions refused, or checks that could not reach the registry);
    ``last_check`` (UTC) and ``last_error``.
    """

    app: App
    interval: float | None = None
    on_swap: Callable[[list[Reload]], object] | None = None
    follow_after_fork: bool = True
    checks: int = attrs.field(default=0, init=False)
    swaps: int = attrs.field(default=0, init=False)
    failures: int = attrs.field(default=0, init=False)
    last_check: datetime | None = attrs.field(default=None, init=False)
    last_error: str | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _polling: bool = attrs.field(default=False, init=False)
    _registry: Registry | None = attrs.field(default=None, init=False)
    _owns_registry: bool = attrs.field(default=False, init=False)
    _pid: int = attrs.field(factory=os.getpid, init=False)

    def __attrs_post_init__(self) -> None:
        if self.interval is not None and not self.interval > 0:
            from modelkit.exceptions import ServingError

            raise ServingError(
                "interval must be a positive number of seconds between registry checks or "
                f"None (check only when asked), got {self.interval!r}"
            )

    def __repr__(self) -> str:
        """``ModelWatcher(interval=30.0, checks=4, swaps=1, failures=0)``."""
        return (
            f"ModelWatcher(interval={self.interval!r}, checks={self.checks}, "
            f"swaps={self.swaps}, failures={self.failures})"
        )

    @property
    def followed(self) -> dict[str, ServedModel]:
        """The served models that follow an alias (or the latest version), by name."""
        return {name: entry for name, entry in self.app.models.items() if follows(entry.uri)}

    @property
    def polling(self) -> bool:
        """Whether a background thread checks every ``interval`` seconds in this process."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the polling thread (when ``interval`` is set); idempotent."""
        _track(self)
        if self.interval is None or self.polling:
            return
        self._stop.clear()
        self._polling = True
        self._spawn()

    def stop(self) -> None:
        """Stop polling, wait (briefly) for a reload in progress, close the registry."""
        self._polling = False
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_STOP_TIMEOUT)
        self._thread = None
        if self._lock.acquire(timeout=_STOP_TIMEOUT):
            try:
                self._close_registry()
            finally:
                self._lock.release()
        else:  # a reload is still loading: closing the registry under it could break it
            logger.warning("a model reload is still running; its registry stays open")

    def check_now(self) -> list[Reload]:
        """Resolve every followed alias now; load, verify, warm up and swap what moved.

        Returns one :class:`Reload` per followed model. Never raises for a version that
        cannot be loaded (it is refused and logged); raises
        :class:`~modelkit.exceptions.RegistryError` (or what the backend raises) only when the
        registry cannot be opened. A second caller waits for the check in progress, then runs
        its own.
        """
        self._check_fork()
        with self._lock:
            results: list[Reload] = []
            followed = self.followed
            if followed:
                registry = self._open_registry()
                results = [self._check_one(registry, entry) for entry in followed.values()]
            self.checks += 1
            self.last_check = datetime.now(timezone.utc)
        swapped = [result for result in results if result.outcome == "swapped"]
        if swapped and self.on_swap is not None:
            try:
                self.on_swap(results)
            except Exception:
                logger.exception("the on_swap callback failed after a model swap")
        return results

    # -- internals ---------------------------------------------------------------------------

    def _check_one(self, registry: Registry, entry: ServedModel) -> Reload:
        uri = str(entry.uri)
        old = entry.version
        try:
            found = registry.resolve(uri)
        except Exception as exc:
            return self._refused(entry, None, f"cannot resolve {uri!r}: {_describe_error(exc)}")
        new = str(found.version)
        if new == old:
            return Reload(entry.name, uri, old, new, "unchanged")
        started = time.perf_counter()
        try:
            artifact = registry.load_artifact(f"models:/{found.name}/{found.version}")
            model = artifact.model
            if model.name != entry.name:
                model = attrs.evolve(model, name=entry.name)
            warm_up(model, artifact.input_example)
        except Exception as exc:
            return self._refused(
                entry, new, f"version {new} was refused: {_describe_error(exc)}", exc
            )
        seconds = time.perf_counter() - started
        if self.app.state != "ready":
            return Reload(entry.name, uri, old, new, "unchanged", "the server is not ready")
        self.app.swap(
            ServedModel(
                name=entry.name,
                model=model,
                version=new,
                uri=uri,
                sha256=found.artifact_sha256,
                load_seconds=seconds,
                artifact=artifact,
            )
        )
        self.swaps += 1
        self.app.metrics.swapped(entry.name, "swapped")
        return Reload(entry.name, uri, old, new, "swapped", seconds=seconds)

    def _refused(
        self,
        entry: ServedModel,
        new: str | None,
        message: str,
        exc: BaseException | None = None,
    ) -> Reload:
        self.failures += 1
        self.app.metrics.swapped(entry.name, "refused")
        self.last_error = f"{entry.name}: {message}"
        logger.error(
            "model %r (%s): %s; still serving version %s",
            entry.name,
            entry.uri,
            message,
            entry.version,
            exc_info=exc,
        )
        return Reload(entry.name, str(entry.uri), entry.version, new, "refused", message)

    def _open_registry(self) -> Registry:
        """The watcher's own registry: a clone of the app's, or one opened from its URL."""
        if self._registry is None:
            self._registry, self._owns_registry = own_registry(self.app.registry)
        return self._registry

    def _close_registry(self) -> None:
        registry, owned = self._registry, self._owns_registry
        self._registry, self._owns_registry = None, False
        if registry is not None and owned:
            try:
                registry.close()
            except Exception as exc:
                logger.warning("could not close the registry %s: %s", registry.url, exc)

    def _spawn(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="modelkit-model-watcher", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        interval = self.interval
        assert interval is not None
        while not self._stop.wait(interval):
            try:
                self.check_now()
            except Exception as exc:  # the registry is down: try again next time
                self.failures += 1
                self.last_error = f"registry check failed: {_describe_error(exc)}"
                logger.error("could not check the served aliases: %s", _describe_error(exc))

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # forked without the at-fork hook (it is registered)
            self._after_fork()

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock and event, and a polling thread of its own."""
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the parent's may have been held at fork time
        stopped = self._stop.is_set()
        self._stop = threading.Event()
        self._thread = None
        if stopped:
            self._stop.set()
        if self._polling and not stopped and self.follow_after_fork:
            self._spawn()
        else:
            self._polling = False


def warm_up(model: Any, example: Mapping[str, Any] | None) -> None:
    """Call every prediction method of ``model`` on an artifact's input example.

    ``example`` is ``{"columns": [...] | None, "data": [[...], ...]}`` (or ``None``: nothing to
    warm up on). What a method raises propagates: the version is not fit to serve. The rows
    are not predictions: ``on_prediction`` hooks (monitors) do not see them.
    """
    if not example or not example.get("data"):
        return
    columns, data = example.get("columns"), example["data"]
    rows: Any = data if columns is None else [dict(zip(columns, row, strict=True)) for row in data]
    data_checked, has_missing = model.signature.check(rows)
    for method in model.methods:
        outputs = model.call(method, data_checked, has_missing=has_missing, observed=False)
        if len(outputs) != len(data):
            raise ValueError(
                f"{method} returned {len(outputs)} results for the {len(data)} rows of the "
                "input example; expected one per row"
            )


def _describe_error(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


# -- the admin route -------------------------------------------------------------------------


NO_AUTH_MESSAGE = (
    "POST /admin/reload needs an authenticated request, and this server authenticates none: "
    "start it with API keys (MODELKIT_API_KEYS=key1,key2 or MODELKIT_API_KEYS_FILE=path, "
    "keys of at least 16 characters) and send Authorization: Bearer <key>"
)
PUBLIC_MESSAGE = (
    "POST /admin/reload is never answered without authentication: remove '/admin/reload' "
    "from the public routes (MODELKIT_PUBLIC_ROUTES or public_routes) and send "
    "Authorization: Bearer <key>"
)


def reload(app: App, request: Request, params: Mapping[str, str]) -> Response:
    """``POST /admin/reload``: check the served aliases now and swap what moved.

    Authenticated requests only: 403 when the server has no authenticators configured (the
    message says how to set API keys). 503 unless the server is ready. 200 with one record
    per followed model (see :class:`Reload`) and ``"changed"``; 500 with an ``"error"`` when
    a version was refused (the old one keeps serving).
    """
    if request.identity is None:
        message = NO_AUTH_MESSAGE if not app.authentication.enabled else PUBLIC_MESSAGE
        return Response.error(403, message)
    if app.state != "ready":
        raise app.unavailable()
    watcher = app.watcher
    results = [] if watcher is None else watcher.check_now()
    document: dict[str, Any] = {
        "changed": any(result.outcome == "swapped" for result in results),
        "models": [result.to_dict() for result in results],
    }
    refused = [result for result in results if result.outcome == "refused"]
    if refused:
        document["error"] = "; ".join(f"{r.model}: {r.error}" for r in refused)
        return Response.json(500, document)
    if not results:
        document["message"] = (
            "no served model follows a registry alias (pinned versions and in-process models "
            "never move)"
        )
    return Response.json(200, document)
