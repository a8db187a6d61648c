"""Micro-batching: batched answers equal lone answers; one bad request fails only itself;
deadlines, full queues and drains; both batchers under real concurrency."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modelkit.exceptions import ServingError, SignatureError
from modelkit.model import Model
from modelkit.serving import App, asgi_app
from modelkit.serving.batching import BatchOptions, Call, Outcome, Work, compute
from modelkit.serving.core import Request, Response, ServedModel
from modelkit.signature import Signature

FEATURES = 4


def _fitted(estimator: Any, classes: int = 2) -> ServedModel:
    X, y = make_classification(
        n_samples=300, n_features=FEATURES, n_informative=3, n_redundant=0,
        n_classes=classes, random_state=1,
    )  # fmt: skip
    return ServedModel("m", Model.wrap(estimator.fit(X, y), sample=X, name="m"), version="1")


SERVED = {
    "binary logistic": _fitted(LogisticRegression(solver="liblinear")),
    "multinomial logistic": _fitted(LogisticRegression(), classes=3),
    "forest": _fitted(RandomForestClassifier(n_estimators=5, random_state=0)),
}


def _finish(outcome: Outcome) -> Response:
    return Response(200)


def _work(rows: Any, methods: tuple[str, ...], version: str | None = None) -> Work:
    return Work(Call("m", rows, methods, _finish, version))


def _results(work: Work) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in work.result().results.items()}


# -- compute: the merge and split of one batch -----------------------------------------------

floats = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=32)
requests = st.lists(
    st.tuples(
        st.lists(st.lists(floats, min_size=FEATURES, max_size=FEATURES), min_size=1, max_size=6),
        st.lists(
            st.sampled_from(["predict", "predict_proba", "decision_function"]),
            min_size=1,
            max_size=3,
            unique=True,
        ),
        st.sampled_from(["lists", "array", "dicts"]),
    ),
    min_size=1,
    max_size=12,
)


def _form(rows: list[list[float]], form: str) -> Any:
    if form == "array":
        return np.asarray(rows)
    if form == "dicts":
        return [{f"f{j}": value for j, value in enumerate(row)} for row in rows]
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SERVED)),
    batch=requests,
    order=st.randoms(use_true_random=False),
)
def test_batched_answers_equal_lone_answers_exactly(
    name: str, batch: list[tuple[Any, list[str], str]], order: Any
) -> None:
    served = SERVED[name]
    offered = served.model.methods
    specs = [
        (_form(rows, form), tuple(m for m in methods if m in offered) or ("predict",))
        for rows, methods, form in batch
    ]
    order.shuffle(specs)
    together = [_work(rows, methods) for rows, methods in specs]
    compute(served, together)
    for (rows, methods), work in zip(specs, together, strict=True):
        alone = _work(rows, methods)
        compute(served, [alone])
        assert work.batch_size == len(specs)
        assert alone.batch_size == 1
        got, expected = _results(work), _results(alone)
        assert got.keys() == set(methods)
        for method in methods:
            assert got[method].dtype == expected[method].dtype
            assert np.array_equal(got[method], expected[method]), method
            direct = getattr(served.model, method)(rows)  # what an in-process call answers
            assert np.array_equal(got[method], direct), method


def test_a_bad_request_gets_its_own_error_and_the_others_their_answers() -> None:
    served = SERVED["binary logistic"]
    good = [[0.1, 0.2, 0.3, 0.4]]
    works = [
        _work(good, ("predict",)),
        _work([[0.1, "x", 0.3, 0.4]], ("predict",)),
        _work([[0.1, 0.2, 0.3]], ("predict",)),
        _work(good, ("predict_proba",)),
    ]
    compute(served, works)
    assert np.array_equal(works[0].result().results["predict"], served.model.predict(good))
    assert isinstance(works[1].error, SignatureError)
    assert "row 0" in str(works[1].error)
    assert isinstance(works[2].error, SignatureError)
    assert "expected 4 features, got 3" in str(works[2].error)
    assert works[3].result().results["predict_proba"].shape == (1, 2)


class _Picky(ClassifierMixin, BaseEstimator):
    """Predicts the sign of the first feature; refuses any batch holding the value 13."""

    def fit(self, X: Any, y: Any) -> _Picky:
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        X = np.asarray(X)
        if (X == 13).any():
            raise ValueError("13 is unlucky")
        return (X[:, 0] > 0).astype(int)


def _picky() -> ServedModel:
    X = np.array([[1.0, 2.0], [-1.0, 0.5]])
    model = Model(_Picky().fit(X, [1, 0]), Signature.infer(X), name="m")
    return ServedModel("m", model, version="1")


def test_a_model_failure_on_one_request_is_retried_alone_for_the_others() -> None:
    served = _picky()
    works = [_work([[1.0, 0.0]], ("predict",)), _work([[13.0, 0.0]], ("predict",))]
    works.append(_work([[-2.0, 0.0], [3.0, 1.0]], ("predict",)))
    compute(served, works)
    assert works[0].result().results["predict"].tolist() == [1]
    assert isinstance(works[1].error, ValueError)
    assert works[2].result().results["predict"].tolist() == [0, 1]


def test_a_request_for_a_version_no_longer_served_is_a_404() -> None:
    served = SERVED["binary logistic"]
    works = [_work([[0, 0, 0, 0]], ("predict",), version="1")]
    works.append(_work([[0, 0, 0, 0]], ("predict",), version="0"))
    compute(served, works)
    assert works[0].error is None
    assert "no version '0' here any more" in str(works[1].error)
    assert works[1].error.status == 404  # type: ignore[union-attr]


def test_a_method_the_model_lacks_is_a_400_for_that_request_only() -> None:
    served = _picky()
    works = [_work([[1.0, 0.0]], ("predict_proba",)), _work([[1.0, 0.0]], ("predict",))]
    compute(served, works)
    assert "has no predict_proba" in str(works[0].error)
    assert works[1].error is None


def test_batch_options_are_checked() -> None:
    with pytest.raises(ServingError, match="max_batch_size must be a positive integer"):
        BatchOptions(max_batch_size=0)
    with pytest.raises(ServingError, match="max_wait_ms must be"):
        BatchOptions(max_wait_ms=-1)
    with pytest.raises(ServingError, match="batching must be True, False or a BatchOptions"):
        App(SERVED["forest"].model, batching="yes")  # type: ignore[arg-type]
    app = App(SERVED["forest"].model, batching={"other": False, "*": BatchOptions(max_queue=3)})
    assert app.batch_options("other").size == 1
    assert app.batch_options("m").max_queue == 3


# -- the batchers under real concurrency -----------------------------------------------------


@attrs.define
class _Gate:
    """An estimator wrapper whose calls block until the test opens the gate."""

    opened: threading.Event = attrs.field(factory=threading.Event)
    entered: threading.Event = attrs.field(factory=threading.Event)
    calls: list[int] = attrs.field(factory=list)
    from_call: int = 1
    """The first call (1-based) that waits for the gate."""


class _Gated(ClassifierMixin, BaseEstimator):
    def __init__(self, inner: Any = None, gate: Any = None) -> None:
        self.inner = inner
        self.gate = gate

    def fit(self, X: Any, y: Any) -> _Gated:
        self.classes_ = self.inner.classes_
        self.n_features_in_ = FEATURES
        return self

    def predict(self, X: Any) -> np.ndarray:
        self.gate.calls.append(len(X))
        if len(self.gate.calls) >= self.gate.from_call:
            self.gate.entered.set()
            assert self.gate.opened.wait(10)
        return np.asarray(self.inner.predict(X))


@pytest.fixture
def gate() -> Iterator[_Gate]:
    gate = _Gate()
    yield gate
    gate.opened.set()


def _gated_model(gate: _Gate) -> Model:
    inner = SERVED["forest"].model.estimator
    return Model(_Gated(inner, gate).fit(None, None), SERVED["forest"].model.signature, name="m")


def _body(row: list[float]) -> bytes:
    return json.dumps({"features": [row]}).encode()


def _post(app: App, row: list[float], **headers: str) -> Response:
    head = {"content-type": "application/json", **headers}
    return app.handle(Request("POST", "/predict", headers=head, body=_body(row)))


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.001)


ROWS = [[float(i), -float(i), i / 2, 1.0] for i in range(12)]


def test_threads_queued_behind_a_batch_are_computed_together(gate: _Gate) -> None:
    app = App(_gated_model(gate), feedback=False, auth=False)
    app.start()
    answers: dict[int, Response] = {}

    def send(i: int) -> None:
        answers[i] = _post(app, ROWS[i])

    first = threading.Thread(target=send, args=(0,))
    first.start()
    assert gate.entered.wait(10)
    others = [threading.Thread(target=send, args=(i,)) for i in range(1, len(ROWS))]
    for thread in others:
        thread.start()
    _until(lambda: app.thread_batcher.waiting == len(ROWS) - 1)
    gate.opened.set()
    for thread in [first, *others]:
        thread.join(10)
    assert gate.calls == [1, len(ROWS) - 1]  # one lone request, then one batch of the rest
    expected = SERVED["forest"].model.predict(ROWS).tolist()
    for i, response in answers.items():
        assert response.status == 200
        assert json.loads(response.body)["prediction"] == [expected[i]]
        timing = response.header("server-timing") or ""
        size = 1 if i == 0 else len(ROWS) - 1
        assert "batch;dur=" in timing
        assert f'desc="{size} requests"' in timing
        assert {part.split(";")[0] for part in timing.split(", ")} == {
            "queue", "batch", "model", "codec"
        }  # fmt: skip
    text = app.handle(Request("GET", "/metrics")).body.decode()
    assert f"modelkit_batch_size_count {len(ROWS)}" in text
    assert 'modelkit_request_stage_seconds_count{stage="model"} 12' in text


def test_a_full_queue_answers_503_with_retry_after(gate: _Gate) -> None:
    app = App(_gated_model(gate), feedback=False, auth=False,
              batching=BatchOptions(max_queue=2), retry_after=7)  # fmt: skip
    app.start()
    threads = [threading.Thread(target=_post, args=(app, ROWS[i])) for i in range(3)]
    threads[0].start()
    assert gate.entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    _until(lambda: app.thread_batcher.waiting == 2)
    refused = _post(app, ROWS[5])
    gate.opened.set()
    for thread in threads:
        thread.join(10)
    assert refused.status == 503
    assert refused.header("retry-after") == "7"
    assert "overloaded" in json.loads(refused.body)["error"]


def test_a_request_past_its_deadline_in_the_queue_gets_504_at_once(gate: _Gate) -> None:
    app = App(_gated_model(gate), feedback=False, auth=False)
    app.start()
    first = threading.Thread(target=_post, args=(app, ROWS[0]))
    first.start()
    assert gate.entered.wait(10)
    started = time.perf_counter()
    late = _post(app, ROWS[1], **{"x-request-timeout": "0.05"})
    waited = time.perf_counter() - started
    assert not gate.opened.is_set()  # answered while the batch before it still computes
    gate.opened.set()
    first.join(10)
    assert late.status == 504, late.body
    assert waited < 5
    assert app.thread_batcher.waiting == 0
    assert gate.calls == [1]  # the expired request was never computed


def test_a_drain_waits_for_queued_requests(gate: _Gate) -> None:
    app = App(_gated_model(gate), feedback=False, auth=False)
    app.start()
    answers: list[Response] = []
    threads = [
        threading.Thread(target=lambda i=i: answers.append(_post(app, ROWS[i]))) for i in range(4)
    ]
    threads[0].start()
    assert gate.entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    _until(lambda: app.thread_batcher.waiting == 3)
    drained: list[bool] = []
    drainer = threading.Thread(target=lambda: drained.append(app.drain(timeout=10)))
    drainer.start()
    _until(lambda: app.state == "draining")
    assert _post(app, ROWS[5]).status == 503  # new requests are refused meanwhile
    gate.opened.set()
    drainer.join(10)
    for thread in threads:
        thread.join(10)
    assert drained == [True]
    assert [response.status for response in answers] == [200] * 4


def test_an_alias_swap_between_batches_is_seen_by_the_next_batch_whole(gate: _Gate) -> None:
    app = App(_gated_model(gate), feedback=False, auth=False)
    app.start()
    answers: list[Response] = []
    threads = [
        threading.Thread(target=lambda i=i: answers.append(_post(app, ROWS[i]))) for i in range(6)
    ]
    threads[0].start()
    assert gate.entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    _until(lambda: app.thread_batcher.waiting == 5)
    flipped = Model(_Picky().fit(np.zeros((1, 2)), [0]), SERVED["forest"].model.signature)
    app.swap(ServedModel("m", attrs.evolve(flipped, signature=flipped.signature), version="2"))
    gate.opened.set()
    for thread in threads:
        thread.join(10)
    versions = sorted(json.loads(response.body)["version"] or "-" for response in answers)
    assert versions == ["-"] + ["2"] * 5  # the first batch by the old model, the rest by v2


# -- the asyncio batcher ---------------------------------------------------------------------


async def _gather_posts(app: Any, rows: list[list[float]], **headers: str) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await asyncio.gather(
            *[client.post("/predict", json={"features": [row]}, headers=headers) for row in rows]
        )


def test_the_event_loop_batches_concurrent_requests(gate: _Gate) -> None:
    served = asgi_app(_gated_model(gate), feedback=False, auth=False)

    async def scenario() -> list[httpx.Response]:
        await served.startup()
        first = asyncio.ensure_future(_gather_posts(served, ROWS[:1]))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        rest = asyncio.ensure_future(_gather_posts(served, ROWS[1:]))
        while served.app.async_batcher.waiting < len(ROWS) - 1:
            await asyncio.sleep(0.001)
        gate.opened.set()
        return [*(await first), *(await rest)]

    answers = asyncio.run(scenario())
    expected = SERVED["forest"].model.predict(ROWS).tolist()
    assert [response.json()["prediction"][0] for response in answers] == expected
    assert gate.calls == [1, len(ROWS) - 1]
    assert all(response.status_code == 200 for response in answers)


def test_the_event_loop_answers_504_for_a_request_stuck_in_the_queue(gate: _Gate) -> None:
    served = asgi_app(_gated_model(gate), feedback=False, auth=False)

    async def scenario() -> list[httpx.Response]:
        await served.startup()
        first = asyncio.ensure_future(_gather_posts(served, ROWS[:1]))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        late = await _gather_posts(served, ROWS[1:3], **{"x-request-timeout": "0.05"})
        assert served.app.async_batcher.waiting == 0
        gate.opened.set()
        return [*(await first), *late]

    answers = asyncio.run(scenario())
    assert [response.status_code for response in answers] == [200, 504, 504]
    assert gate.calls == [1]
    served.app.drain(timeout=5)


def test_a_request_whose_deadline_passes_while_its_batch_computes_gets_504(gate: _Gate) -> None:
    options = BatchOptions(max_batch_size=2, max_wait_ms=10_000)
    app = App(_gated_model(gate), feedback=False, auth=False, batching=options)
    app.start()
    app._arriving += 1  # the leader lingers until its batch is full: both share one batch
    answers: list[Response] = []
    leader = threading.Thread(target=lambda: answers.append(_post(app, ROWS[0])))
    leader.start()
    _until(lambda: app.thread_batcher.waiting == 1)
    late = _post(app, ROWS[1], **{"x-request-timeout": "0.2"})  # joins, then times out
    assert gate.entered.is_set()  # inside the batch at the gate when its deadline passed
    app._arriving -= 1
    gate.opened.set()
    leader.join(10)
    assert late.status == 504
    assert [response.status for response in answers] == [200]
    assert gate.calls == [2]  # computed together; the late answer was dropped


def test_the_event_loop_computes_cheap_batches_itself(seed_model: Model) -> None:
    served = asgi_app(seed_model, feedback=False, auth=False)
    rows = seed_model_rows(40)

    async def scenario() -> list[httpx.Response]:
        await served.startup()
        first = await _gather_posts(served, rows[:1])  # measures the model: it is cheap
        return [*first, *(await _gather_posts(served, rows[1:]))]

    answers = asyncio.run(scenario())
    expected = seed_model.predict(rows).tolist()
    assert [response.json()["prediction"][0] for response in answers] == expected
    sizes = [_batch_size(response) for response in answers]
    assert sizes[0] == 1
    assert max(sizes) > 1  # the concurrent ones were batched
    served.app.drain(timeout=5)


def seed_model_rows(n: int) -> list[list[float]]:
    rng = np.random.default_rng(7)
    return rng.normal(size=(n, 20)).tolist()


def _batch_size(response: Any) -> int:
    timing = response.headers["server-timing"]
    return int(timing.split('desc="')[1].split(" ")[0])


def test_a_batch_lingers_for_requests_on_their_way(gate: _Gate) -> None:
    gate.from_call = 10**6  # never waits
    app = App(_gated_model(gate), feedback=False, auth=False,
              batching=BatchOptions(max_wait_ms=300))  # fmt: skip
    app.start()
    answers: list[Response] = []
    app._arriving += 1  # a request is being decoded somewhere: worth waiting for
    first = threading.Thread(target=lambda: answers.append(_post(app, ROWS[0])))
    first.start()
    _until(lambda: app.thread_batcher.waiting == 1)
    second = threading.Thread(target=lambda: answers.append(_post(app, ROWS[1])))
    second.start()
    _until(lambda: len(answers) == 2)
    app._arriving -= 1
    first.join(10)
    second.join(10)
    assert gate.calls == [2]  # one batch for both
    assert all(_batch_size_of(response) == 2 for response in answers)


def _batch_size_of(response: Response) -> int:
    timing = response.header("server-timing") or ""
    return int(timing.split('desc="')[1].split(" ")[0])


def test_the_event_loop_lingers_then_flushes(seed_model: Model) -> None:
    served = asgi_app(seed_model, feedback=False, auth=False,
                      batching=BatchOptions(max_wait_ms=30))  # fmt: skip
    rows = seed_model_rows(3)

    async def scenario() -> list[httpx.Response]:
        await served.startup()
        await _gather_posts(served, rows[:1])
        served.app._arriving += 1  # someone else is on the way: the batch waits for them
        try:
            return await _gather_posts(served, rows)
        finally:
            served.app._arriving -= 1

    answers = asyncio.run(scenario())
    assert [response.status_code for response in answers] == [200] * 3
    assert {_batch_size(response) for response in answers} == {3}
    queued = [
        float(r.headers["server-timing"].split("queue;dur=")[1].split(",")[0]) for r in answers
    ]
    assert min(queued) >= 25  # milliseconds: it waited for the timer
    served.app.drain(timeout=5)


def test_dataframe_rows_are_joined_and_split(mixed_model: Model, mixed_frame: Any) -> None:
    served = ServedModel("m", attrs.evolve(mixed_model, name="m"), version="1")
    parts = [mixed_frame.iloc[:2], mixed_frame.iloc[2:5], mixed_frame.iloc[5:6]]
    works = [_work(part, ("predict", "predict_proba")) for part in parts]
    compute(served, works)
    for part, work in zip(parts, works, strict=True):
        for method in ("predict", "predict_proba"):
            alone = getattr(mixed_model, method)(part)
            assert np.array_equal(work.result().results[method], alone)


def test_a_batch_that_raises_fails_its_requests_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(served: ServedModel, works: list[Work]) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("modelkit.serving.batching.compute", broken)
    app = App(SERVED["forest"].model, feedback=False, auth=False)
    app.start()
    response = _post(app, ROWS[0])
    assert response.status == 500
    assert "a batch of 1 requests failed" in caplog.text
    served = asgi_app(SERVED["forest"].model, feedback=False, auth=False)

    async def scenario() -> list[httpx.Response]:
        await served.startup()
        return await _gather_posts(served, ROWS[:3])

    assert [r.status_code for r in asyncio.run(scenario())] == [500, 500, 500]
    served.app.drain(timeout=5)
