"""Adaptive micro-batching: many small requests, one model call.

A protocol handler decodes its request into a :class:`Call` (which model, which rows, which
methods) instead of calling the model itself. The application queues each call and computes
the queue in batches: the rows of every queued request for one model are checked, joined,
predicted in one estimator call per method and split back, so a request of one row costs a
share of one model call instead of a whole one.

Two batchers share that computation (:func:`compute`):

- :class:`AsyncBatcher` (ASGI and the native server): requests wait in the event loop; a
  short batch is computed in the loop's next turn, once every request that arrived with it
  has been decoded, and a long one by a worker thread, while the loop decodes the requests
  of the next batch.
- :class:`ThreadBatcher` (WSGI, and large ASGI requests run in a thread): the first request
  thread to find the batcher idle computes a batch for everyone queued (leader/followers), so
  no thread is added and a request alone pays no hand-over.

Batching is adaptive: a batch starts as soon as the model is free, with whatever is queued
(nothing waits for a batch to fill while the model is idle, so one request alone is answered
at once); it only lingers, at most ``max_wait_ms``, while other requests are known to be
between arrival and queue. Guarantees:

- each request keeps its own methods and outputs, and gets exactly the answer it would get
  alone (the row-consistent kernels of :mod:`modelkit._kernels` make this bit-exact for
  linear models; other estimators compute each row independently of the others);
- a bad request never fails the others: input is checked request by request, and when a
  batched model call raises, its requests are computed one by one so that only the bad one
  gets the error;
- a request past its deadline is dropped before computing (504 at once), and a full queue
  answers 503 with ``Retry-After`` instead of growing;
- a batch is computed by one version of the model entirely, and every response names it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit.exceptions import ServingError
from modelkit.serving._http import HTTPError

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from modelkit.serving.core import App, Response, ServedModel

logger = logging.getLogger("modelkit.serving")

__all__ = [
    "AsyncBatcher",
    "BatchObserver",
    "BatchOptions",
    "Call",
    "Outcome",
    "ThreadBatcher",
    "Work",
    "compute",
]


def _positive_int(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ServingError(f"{attribute.name} must be a positive integer, got {value!r}")


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ServingError(f"{attribute.name} must be ≥ 0 milliseconds, got {value!r}")


@attrs.frozen(kw_only=True)
class BatchOptions:
    """How requests for one model are batched.

    ``max_batch_size``: most requests in one batch (not rows: a request keeps its rows
    together). ``max_wait_ms``: longest a batch waits for requests known to be on their way
    while the model is idle (``0``: never waits). ``max_queue``: most requests waiting; one
    more is answered 503 with ``Retry-After``. ``enabled=False`` computes every request on
    its own (still queued, so the model computes one request at a time).
    """

    enabled: bool = True
    max_batch_size: int = attrs.field(default=64, validator=_positive_int)
    max_wait_ms: float = attrs.field(default=2.0, converter=float, validator=_non_negative)
    max_queue: int = attrs.field(default=1024, validator=_positive_int)

    @property
    def size(self) -> int:
        """The batch size in effect: ``max_batch_size``, or 1 when batching is off."""
        return self.max_batch_size if self.enabled else 1


@attrs.frozen
class Outcome:
    """What a :class:`Call` computed: the model (and version) that did it, per-method results.

    ``inputs`` are the request's rows as the model was given them (checked and coerced, in
    the Signature's order), for recording with the prediction.
    """

    served: ServedModel
    results: Mapping[str, Any]
    rows: int
    inputs: Any = attrs.field(default=None, repr=False, eq=False)


@attrs.frozen
class Call:
    """Model work a protocol handler asks for; ``finish`` turns its outcome into the response.

    ``model`` is the served name, ``rows`` the request's rows in any form
    :meth:`Signature.check <modelkit.Signature.check>` takes, ``methods`` the methods to run
    (``("predict", "predict_proba")``), ``version`` the version the client named in its
    path, if it did: a batch computed by another version answers 404 for it.
    """

    model: str
    rows: Any
    methods: tuple[str, ...]
    finish: Callable[[Outcome], Response] = attrs.field(repr=False)
    version: str | None = None


@attrs.define(eq=False)
class Work:
    """One call's passage through a batcher: its deadline, then its outcome or error."""

    call: Call
    deadline: float | None = None
    """``time.perf_counter()`` value past which the call is dropped (504)."""
    timeout: float | None = None
    """The deadline's length in seconds, for its error message."""
    queued_at: float = attrs.field(factory=time.perf_counter)
    outcome: Outcome | None = None
    error: BaseException | None = None
    started_at: float | None = None
    batch_seconds: float = 0.0
    model_seconds: float = 0.0
    batch_size: int = 0
    abandoned: bool = False
    data: Any = attrs.field(default=None, repr=False)
    has_missing: bool = False
    results: dict[str, Any] = attrs.field(factory=dict, repr=False)
    lead: bool = False
    event: threading.Event | None = attrs.field(default=None, repr=False)
    notify: Callable[[], None] | None = attrs.field(default=None, repr=False)
    """Called once, in the event loop, when the work has its outcome or error (async)."""
    timer: asyncio.TimerHandle | None = attrs.field(default=None, repr=False)
    notified: bool = False

    @property
    def done(self) -> bool:
        """Whether the work has its outcome or its error."""
        return self.outcome is not None or self.error is not None

    @property
    def queue_seconds(self) -> float:
        """Time between queueing and the start of its batch (0 if it never started)."""
        return 0.0 if self.started_at is None else self.started_at - self.queued_at

    def expired(self, now: float) -> bool:
        """Whether the deadline has passed at ``now``."""
        return self.deadline is not None and now > self.deadline

    def result(self) -> Outcome:
        """The outcome, or raise the error."""
        if self.error is not None:
            raise self.error
        if self.outcome is None:  # pragma: no cover - guarded by the batchers
            raise RuntimeError("the request was not computed")
        return self.outcome


# -- the computation of one batch ------------------------------------------------------------

BatchObserver = Callable[["ServedModel", Any, Any], None]
"""Called once per computed batch with the served model, the rows of the requests that
succeeded (as the model was given them) and their ``predict`` outputs (``None`` when the
batch did not compute ``predict`` for all of them). Must not block: it hands them over."""


def compute(served: ServedModel, works: list[Work], observe: BatchObserver | None = None) -> None:
    """Compute ``works`` (calls for ``served``) as one batch; set each one's outcome or error.

    ``observe`` (optional) is given the batch's inputs and outputs once (monitoring). Never
    raises: every failure is attributed to the works it concerns.
    """
    started = time.perf_counter()
    model = served.model
    live: list[Work] = []
    for work in works:
        work.started_at, work.batch_size = started, len(works)
        wanted = work.call.version
        if wanted is not None and wanted != served.version:
            work.error = HTTPError(
                404,
                f"model {served.name!r} has no version {wanted!r} here any more: it is now "
                f"served with version {served.version!r}",
            )
            continue
        missing = [method for method in work.call.methods if method not in model.methods]
        if missing:
            offered = ", ".join(repr(m) for m in model.methods)
            work.error = HTTPError(
                400, f"model {served.name!r} has no {missing[0]}; it offers {offered}"
            )
            continue
        live.append(work)
    _check(model, live)
    model_seconds = 0.0
    methods = dict.fromkeys(method for work in live for method in work.call.methods)
    joined: dict[str, tuple[list[Work], Any, Any]] = {}
    for method in methods:
        group = [w for w in live if w.error is None and method in w.call.methods]
        if group:
            clock = time.perf_counter()
            batch = _run(model, method, group)
            model_seconds += time.perf_counter() - clock
            if batch is not None:
                joined[method] = (group, *batch)
    if observe is not None:
        _observe(observe, served, live, joined)
    elapsed = time.perf_counter() - started
    for work in works:
        work.model_seconds = model_seconds
        work.batch_seconds = elapsed - model_seconds
        if work.error is None and work in live:
            work.outcome = Outcome(served, dict(work.results), _count(work.data), work.data)
        work.data, work.results = None, {}


def _observe(
    observe: BatchObserver,
    served: ServedModel,
    live: list[Work],
    joined: Mapping[str, tuple[list[Work], Any, Any]],
) -> None:
    """Hand the rows of the requests that succeeded, and their ``predict`` outputs, over.

    In the common case (every request asked for ``predict``) the joined arrays of the model
    call itself are handed over: no copy.
    """
    try:
        ok = [work for work in live if work.error is None]
        if not ok:
            return
        predicted = joined.get("predict")
        if predicted is not None and predicted[0] == ok:
            inputs, outputs = predicted[1], predicted[2]
        else:
            inputs = _join([work.data for work in ok])
            outputs = None
            if all("predict" in work.results for work in ok):
                outputs = _join([work.results["predict"] for work in ok])
        observe(served, inputs, outputs)
    except Exception:  # monitoring never fails a batch
        logger.warning("could not hand a batch of %r over to its monitor", served.name)


def _count(data: Any) -> int:
    shape = getattr(data, "shape", None)
    return int(shape[0]) if shape else len(data)


def _joinable(works: list[Work]) -> bool:
    """Whether every request brings a list of rows (lists or dicts), as JSON does."""
    for work in works:
        rows = work.call.rows
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], list | dict):
            return False
    return True


def _check(model: Any, works: list[Work]) -> None:
    """Check each work's rows; for lists of rows, check them all at once first."""
    signature = model.signature
    if len(works) > 1 and _joinable(works):
        rows = [row for work in works for row in work.call.rows]
        try:
            data, has_missing = signature.check(rows)
        except Exception:  # some request is bad: check one by one to find which
            data = None
        if data is not None:
            start = 0
            for work in works:
                stop = start + len(work.call.rows)
                work.data, work.has_missing = data[start:stop], has_missing
                start = stop
            return
    for work in works:
        try:
            work.data, work.has_missing = signature.check(work.call.rows)
        except Exception as exc:
            work.error = exc


def _join(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, np.ndarray) for part in parts):
        return np.concatenate(parts)
    import pandas as pd

    return pd.concat(parts)


def _run(model: Any, method: str, group: list[Work]) -> tuple[Any, Any] | None:
    """One model call for ``group``; one call per work when the joined call raises.

    Returns the joined inputs and outputs of the one call, or ``None`` when it raised.
    """
    try:
        data = _join([work.data for work in group])
        outputs = model.call(method, data, has_missing=any(work.has_missing for work in group))
    except Exception as exc:
        if len(group) == 1:
            group[0].error = exc
            return None
        for work in group:
            try:
                work.results[method] = model.call(method, work.data, has_missing=work.has_missing)
            except Exception as alone:
                work.error = alone
        return None
    start = 0
    for work in group:
        stop = start + _count(work.data)
        work.results[method] = outputs[start:stop]
        start = stop
    return data, outputs


# -- queues ----------------------------------------------------------------------------------


@attrs.define
class _Queues:
    """The waiting works, one FIFO per model, and the batching options of each model."""

    options: Callable[[str], BatchOptions]
    queues: dict[str, collections.deque[Work]] = attrs.field(factory=dict)
    waiting: int = 0

    def add(self, work: Work, overloaded: Callable[[], HTTPError]) -> None:
        options = self.options(work.call.model)
        queue = self.queues.get(work.call.model)
        if queue is None:
            queue = self.queues[work.call.model] = collections.deque()
        if len(queue) >= options.max_queue:
            raise overloaded()
        queue.append(work)
        self.waiting += 1

    def remove(self, work: Work) -> bool:
        queue = self.queues.get(work.call.model)
        if queue is None or work not in queue:
            return False
        queue.remove(work)
        self.waiting -= 1
        return True

    def oldest(self) -> str | None:
        """The model whose first waiting work came first."""
        best, when = None, 0.0
        for name, queue in self.queues.items():
            if queue and (best is None or queue[0].queued_at < when):
                best, when = name, queue[0].queued_at
        return best

    def take(self, name: str) -> list[Work]:
        queue = self.queues[name]
        size = self.options(name).size
        batch = [queue.popleft() for _ in range(min(size, len(queue)))]
        self.waiting -= len(batch)
        return batch

    def filling(self, name: str, in_progress: int) -> float:
        """How long (seconds) the next batch of ``name`` may wait for more works, or 0."""
        options = self.options(name)
        queued = len(self.queues[name])
        if options.max_wait_ms <= 0 or not options.enabled or queued >= options.size:
            return 0.0
        return options.max_wait_ms / 1000 if in_progress > 0 else 0.0


def _observer(app: App, served: ServedModel) -> BatchObserver | None:
    """Where a batch of ``served`` goes to be monitored (``None``: nowhere)."""
    monitoring = app.monitoring
    return None if monitoring is None else monitoring.batch_observer(served)


def _guarded(
    run: Callable[[ServedModel, list[Work]], None], served: ServedModel, works: list[Work]
) -> None:
    """Compute a batch; should that raise (it does not: a bug), fail its works, never hang."""
    try:
        run(served, works)
    except Exception as exc:
        logger.exception("a batch of %d requests failed", len(works))
        for work in works:
            if not work.done:
                work.error = exc


def _expire(batch: list[Work], app: App) -> list[Work]:
    """Drop the works past their deadline (504), return the others."""
    now = time.perf_counter()
    kept = []
    for work in batch:
        if work.abandoned:
            continue
        if work.expired(now):
            work.error = app.deadline_exceeded(work.timeout or 0.0)
        else:
            kept.append(work)
    return kept


class ThreadBatcher:
    """Batches the calls of request threads: a leader thread computes for its followers.

    ``run(work)`` blocks until ``work`` is computed (or its deadline passes). The first
    thread to find the batcher idle leads: it computes batches until its own work is done,
    then hands the lead to the oldest waiting thread, so no thread leads for ever.
    """

    def __init__(self, app: App, options: Callable[[str], BatchOptions]) -> None:
        """Batch for ``app``, with ``options(model_name)`` for each model."""
        self._app = app
        self._cond = threading.Condition()
        self._queues = _Queues(options)
        self._busy = False

    @property
    def waiting(self) -> int:
        """How many calls wait for a batch."""
        return self._queues.waiting

    def run(self, work: Work) -> Outcome:
        """Queue ``work``, wait for its batch, and return its outcome (or raise its error)."""
        work.event = threading.Event()
        with self._cond:
            self._queues.add(work, self._app.overloaded)
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                self._cond.notify_all()  # a leader lingering for more works
        if not lead:
            lead = self._follow(work)
        if lead:
            self._lead(work)
        return work.result()

    def _follow(self, work: Work) -> bool:
        """Wait to be computed, or to be handed the lead (returns whether to lead)."""
        assert work.event is not None
        remaining = None if work.deadline is None else work.deadline - time.perf_counter()
        if work.event.wait(None if remaining is None else max(remaining, 0.0)):
            return work.lead
        with self._cond:
            if work.lead:  # handed the lead as the deadline passed: lead anyway
                return True
            if self._queues.remove(work):
                work.error = self._app.deadline_exceeded(work.timeout or 0.0)
                return False
            work.abandoned = True  # in a batch being computed: its answer is dropped
            work.error = self._app.deadline_exceeded(work.timeout or 0.0)
            return False

    def _lead(self, mine: Work) -> None:
        while True:
            with self._cond:
                name = self._queues.oldest()
                if name is not None:
                    self._linger(name)
                    batch = self._queues.take(name)
                else:
                    batch = []
            live = _expire(batch, self._app)
            if live:
                _guarded(self._compute, self._app.serving(live[0].call.model), live)
            for work in batch:
                if work is not mine and work.event is not None:
                    work.event.set()
            if mine.done or name is None:
                self._hand_over()
                return

    def _compute(self, served: ServedModel, works: list[Work]) -> None:
        compute(served, works, _observer(self._app, served))

    def _linger(self, name: str) -> None:
        """Wait (lock held) while more works for ``name`` are on their way."""
        limit = self._queues.filling(name, self._app.arriving)
        if limit <= 0:
            return
        until = time.perf_counter() + limit
        while self._queues.filling(name, self._app.arriving) > 0:
            left = until - time.perf_counter()
            if left <= 0 or not self._cond.wait(left):
                return

    def _hand_over(self) -> None:
        with self._cond:
            name = self._queues.oldest()
            if name is None:
                self._busy = False
                return
            successor = self._queues.queues[name][0]
            successor.lead = True
        assert successor.event is not None
        successor.event.set()


INLINE_SECONDS = 0.002
"""Batches expected to compute in less than this are computed in the event loop itself."""


class AsyncBatcher:
    """Batches the calls of an event loop's requests.

    A batch expected to take less than :data:`INLINE_SECONDS` (from the model's recent cost
    per request) is computed in the event loop, in the loop's next turn: by then every request
    that arrived with it has been decoded and queued (a request's task often runs from its
    first byte to its call without yielding, so the queue cannot tell who else is coming).
    No thread hand-over, no contention for the GIL. Longer batches (and a model's first,
    whose cost is unknown) go to a worker thread, so that the loop keeps decoding (and
    answering health checks) meanwhile.
    """

    def __init__(self, app: App, options: Callable[[str], BatchOptions]) -> None:
        """Batch for ``app``, with ``options(model_name)`` for each model."""
        self._app = app
        self._queues = _Queues(options)
        self._busy = False
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cost: dict[str, float] = {}
        """Recent compute time per request of each model, in seconds."""

    @property
    def waiting(self) -> int:
        """How many calls wait for a batch."""
        return self._queues.waiting

    async def run(self, work: Work) -> Outcome:
        """Queue ``work``, wait for its batch, and return its outcome (or raise its error)."""
        import asyncio

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        self.submit(work, wake)
        await future
        return work.result()

    def submit(self, work: Work, notify: Callable[[], None]) -> None:
        """Queue ``work``; ``notify()`` is called in the loop once it has its outcome or error.

        The callback form of :meth:`run`, for servers that answer from callbacks rather than
        one task per request. Call it from the event loop. Raises the 503 of a full queue.
        """
        import asyncio

        loop = self._loop = asyncio.get_running_loop()
        self._queues.add(work, self._app.overloaded)
        work.notify = notify
        if work.deadline is not None:
            delay = max(0.0, work.deadline - time.perf_counter())
            work.timer = loop.call_later(delay, self._expired, work)
        self._kick()

    def _expired(self, work: Work) -> None:
        """A work's deadline passed: out of the queue (or its batch's answer dropped), 504."""
        if work.notified:
            return
        if not self._queues.remove(work):
            work.abandoned = True
        work.error = self._app.deadline_exceeded(work.timeout or 0.0)
        self._notify(work)

    @staticmethod
    def _notify(work: Work) -> None:
        if work.notified:
            return
        work.notified = True
        if work.timer is not None:
            work.timer.cancel()
        if work.notify is not None:
            work.notify()

    def close(self) -> None:
        """Stop the worker thread (after the batches in flight)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _cheap(self, name: str, requests: int) -> bool:
        cost = self._cost.get(name)
        return cost is not None and cost * requests < INLINE_SECONDS

    def _kick(self) -> None:
        if self._busy or self._scheduled or self._loop is None:
            return
        name = self._queues.oldest()
        if name is None:
            return
        wait = self._queues.filling(name, self._app.arriving)
        if wait > 0:
            if self._timer is None:  # else the timer, or the next arrival, starts it
                self._timer = self._loop.call_later(wait, self._flush)
            return
        queued = min(len(self._queues.queues[name]), self._queues.options(name).size)
        if self._cheap(name, queued):
            # after the requests decoded in this turn of the loop have joined the queue
            self._scheduled = True
            self._loop.call_soon(self._inline)
        else:
            self._start(name)

    def _flush(self) -> None:
        self._timer = None
        if not (self._busy or self._scheduled):
            name = self._queues.oldest()
            if name is not None:
                self._start(name)

    def _take(self, name: str) -> tuple[list[Work], list[Work]]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self._queues.take(name)
        return batch, _expire(batch, self._app)

    def _inline(self) -> None:
        self._scheduled = False
        name = self._queues.oldest()
        if name is None or self._busy:
            return
        batch, live = self._take(name)
        if live:
            _guarded(self._compute, self._app.serving(name), live)
        self._settle(batch)
        self._kick()

    def _start(self, name: str) -> None:
        batch, live = self._take(name)
        if not live:
            self._settle(batch)
            self._kick()
            return
        assert self._loop is not None
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix="modelkit-batch")
        self._busy = True
        served = self._app.serving(name)
        done = self._loop.run_in_executor(self._executor, _guarded, self._compute, served, live)
        done.add_done_callback(lambda _: self._finished(batch))

    def _compute(self, served: ServedModel, works: list[Work]) -> None:
        started = time.perf_counter()
        compute(served, works, _observer(self._app, served))
        seconds = (time.perf_counter() - started) / len(works)
        previous = self._cost.get(served.name, seconds)
        self._cost[served.name] = 0.8 * previous + 0.2 * seconds  # per request, smoothed

    def _finished(self, batch: list[Work]) -> None:
        self._busy = False
        self._settle(batch)
        self._kick()

    def _settle(self, batch: Iterable[Work]) -> None:
        for work in batch:
            self._notify(work)
