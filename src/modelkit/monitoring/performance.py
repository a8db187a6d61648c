"""Performance from delayed labels: rolling metrics against the training-time baseline.

Labels arrive late: through ``POST /feedback`` (stored by the registry next to the recorded
predictions) or ``Monitor.observe(..., labels=...)``. A :class:`PerformanceTracker` keeps the
last ``window`` labelled rows (constant memory), computes the metrics the model was
evaluated with at training time (``accuracy``, ``f1``; ``rmse``, ``mae``), and compares each
with its baseline from the artifact's manifest by a statistical rule, not one noisy window:

    a drop is declared when the whole one-sided confidence interval of the window's metric
    (level ``1 - alpha``) lies beyond the baseline by more than the tolerance, on at least
    ``min_rows`` labelled rows.

Accuracy uses a Wilson interval; F1 a seeded bootstrap; RMSE and MAE a normal interval on
the squared and absolute errors; ROC AUC (binary, or the macro average of one-vs-rest AUCs
over several classes, as ``modelkit.train`` evaluates it) DeLong's interval, from the
placement values of every scored row. AUC needs scores (the positive class's probability or
decision value, or ``predict_proba``'s rows), given beside the outputs
(``add(..., scores=...)``, ``expect(..., scores=...)``, ``Monitor.observe(..., scores=...)``);
until ``min_rows`` labelled rows carry scores it reports "insufficient data".
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit._metrics import f1_score
from modelkit.exceptions import UsageError
from modelkit.monitoring.alerts import warn

if TYPE_CHECKING:
    from modelkit.monitoring.monitor import Monitor
    from modelkit.registry import Feedback, Registry

__all__ = ["HIGHER_IS_BETTER", "PerformanceReport", "PerformanceTracker", "roc_auc"]

HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "roc_auc": True, "rmse": False, "mae": False}
"""The metrics a tracker computes, and their direction."""
DEFAULT_TOLERANCE = {"accuracy": 0.02, "f1": 0.02, "roc_auc": 0.02, "rmse": 0.10, "mae": 0.10}
"""Drops smaller than this are tolerated: absolute for accuracy, F1 and AUC, relative (10%
worse) for the errors."""
_BOOTSTRAP = 200


@attrs.frozen(kw_only=True)
class PerformanceReport:
    """One metric of one window against its baseline.

    ``value`` is the window's metric and ``low``/``high`` its ``1 - alpha`` confidence
    interval; ``threshold`` the worst value tolerated (baseline minus or times the
    tolerance); ``status`` is ``"drop"``, ``"ok"`` or ``"insufficient data"``.
    """

    metric: str
    baseline: float
    value: float
    low: float
    high: float
    threshold: float
    n: int
    status: str
    model: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    @property
    def drop(self) -> bool:
        """Whether the metric is confidently worse than tolerated."""
        return self.status == "drop"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = attrs.asdict(self)
        for key in ("start", "end"):
            out[key] = None if out[key] is None else out[key].isoformat()
        for key in ("baseline", "value", "low", "high", "threshold"):
            out[key] = out[key] if math.isfinite(out[key]) else None
        return out


def _wilson(k: float, n: int, z: float) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@attrs.define(kw_only=True)
class PerformanceTracker:
    """Rolling performance of a model from labelled predictions.

    ``baseline`` maps metric names to training-time values (``artifact.metrics``); only
    metrics present there and in :data:`HIGHER_IS_BETTER` are tracked. ``window`` is how
    many of the latest labelled rows count; ``positive`` the positive class for a binary F1
    (default: ``classes[1]`` when ``classes`` names two, as ``modelkit.train`` evaluates a
    binary model, else macro F1) and a binary AUC (default: the larger of the two labels, as
    scikit-learn's). ``classes`` names the columns of 2-D scores, in order (the model's
    ``classes_``; default: the sorted labels seen). ``registry`` and ``name``: where
    :meth:`update_from_registry` reads feedback and where drops are stored as alerts.
    ``scorer`` (optional) scores recorded input rows (a list of rows in the Signature's
    order, as :attr:`Feedback.inputs <modelkit.registry.Feedback.inputs>` holds them), as
    :meth:`add`'s ``scores``: feedback read from the registry then carries scores, so AUC is
    tracked for served models, whose records hold no scores. In-process, labels can also
    follow by id: :meth:`expect` keeps predicted outputs (and scores) by id
    (``Monitor.observe(..., ids=...)`` does) and :meth:`label` joins the labels when they
    come.
    """

    baseline: Mapping[str, float]
    window: int = 1000
    min_rows: int = 200
    alpha: float = 0.05
    tolerance: Mapping[str, float] = attrs.field(factory=lambda: dict(DEFAULT_TOLERANCE))
    positive: Any = None
    classes: Sequence[Any] | None = None
    name: str | None = None
    registry: Registry | None = None
    monitor: Monitor | None = None
    scorer: Callable[[list[Any]], Any] | None = None
    _outputs: deque[Any] = attrs.field(init=False)
    _labels: deque[Any] = attrs.field(init=False)
    _scores: deque[Any] = attrs.field(init=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _since: datetime | None = attrs.field(init=False, default=None)
    _start: datetime | None = attrs.field(init=False, default=None)
    _end: datetime | None = attrs.field(init=False, default=None)
    _alerted: set[str] = attrs.field(init=False, factory=set)
    _waiting: OrderedDict[str, Any] = attrs.field(init=False, factory=OrderedDict)
    max_waiting: int = 100_000

    def __attrs_post_init__(self) -> None:
        if self.window < 2 or self.min_rows < 2:
            raise UsageError(
                f"window and min_rows must be >= 2, got {self.window} and {self.min_rows}"
            )
        if not self.metrics:
            raise UsageError(
                f"no trackable metric in the baseline {dict(self.baseline)}; the tracker "
                f"computes {', '.join(HIGHER_IS_BETTER)}"
            )
        self._outputs = deque(maxlen=self.window)
        self._labels = deque(maxlen=self.window)
        self._scores = deque(maxlen=self.window)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics tracked: those of the baseline the tracker can compute."""
        return tuple(
            m for m in HIGHER_IS_BETTER if m in self.baseline and math.isfinite(self.baseline[m])
        )

    @property
    def n_labelled(self) -> int:
        """How many labelled rows the window holds."""
        return len(self._labels)

    def add(
        self, outputs: Any, labels: Any, *, scores: Any = None, at: datetime | None = None
    ) -> None:
        """Add predicted ``outputs`` and their true ``labels`` (rows with label ``None`` are
        skipped). ``scores`` (optional, for AUC): one score per row (the positive class's
        probability or decision value) or one row of class probabilities per row (2-D, in
        the order of :attr:`classes`); rows of ``None`` or NaN have none."""
        outs = list(np.asarray(outputs, dtype=object).ravel())
        labs = list(np.asarray(labels, dtype=object).ravel())
        if len(outs) != len(labs):
            raise UsageError(f"got {len(outs)} outputs but {len(labs)} labels; give one per row")
        self._append(outs, labs, _score_rows(scores, len(outs)), at)

    def _append(
        self, outs: list[Any], labs: list[Any], rows: list[Any], at: datetime | None
    ) -> None:
        when = at or datetime.now(timezone.utc)
        with self._lock:
            for output, label, score in zip(outs, labs, rows, strict=True):
                if label is None or output is None:
                    continue
                self._outputs.append(output)
                self._labels.append(label)
                self._scores.append(score)
            self._start = self._start or when
            self._end = when

    def expect(self, ids: Iterable[Any], outputs: Any, *, scores: Any = None) -> None:
        """Remember the outputs (and ``scores``, as in :meth:`add`) of predictions whose
        labels will come later (:meth:`label`).

        At most ``max_waiting`` predictions wait (the oldest are forgotten first), so memory
        stays bounded when labels never come.
        """
        outs = list(np.asarray(outputs, dtype=object).ravel())
        keys = [str(key) for key in ids]
        if len(keys) != len(outs):
            raise UsageError(f"got {len(keys)} ids but {len(outs)} outputs; give one per row")
        rows = _score_rows(scores, len(outs))
        with self._lock:
            for key, output, score in zip(keys, outs, rows, strict=True):
                self._waiting[key] = (output, score)
                self._waiting.move_to_end(key)
            while len(self._waiting) > self.max_waiting:
                self._waiting.popitem(last=False)

    def label(self, labels: Mapping[Any, Any], *, at: datetime | None = None) -> int:
        """Join delayed labels with the outputs :meth:`expect` kept, by id; return how many
        matched (unknown or forgotten ids are ignored)."""
        outputs, matched, scores = [], [], []
        with self._lock:
            for key, value in labels.items():
                if value is None:  # still unknown: keep waiting
                    continue
                kept = self._waiting.pop(str(key), None)
                if kept is not None and kept[0] is not None:
                    outputs.append(kept[0])
                    scores.append(kept[1])
                    matched.append(value)
        if matched:
            self._append(outputs, matched, scores, at)
        return len(matched)

    def add_feedback(self, feedback: Iterable[Feedback]) -> int:
        """Add labelled predictions read from the registry; return how many rows."""
        items = [item for item in feedback if item.outputs is not None]
        rows = 0
        for item, scores in zip(items, self._scores_of(items), strict=True):
            self.add(item.outputs, item.labels, scores=scores, at=item.received_at)
            rows += sum(label is not None for label in item.labels)
            self._since = max(self._since or item.received_at, item.received_at)
        return rows

    def _scores_of(self, items: list[Feedback]) -> list[Any]:
        """The :attr:`scorer`'s scores of each item's recorded inputs (``None``: none), in
        one call, when AUC is tracked; a scorer that fails warns, once, and gives none."""
        scores: list[Any] = [None] * len(items)
        if self.scorer is None or "roc_auc" not in self.metrics:
            return scores
        wanted = [
            i
            for i, item in enumerate(items)
            if item.inputs is not None and any(label is not None for label in item.labels)
        ]
        if not wanted:
            return scores
        inputs = [row for i in wanted for row in items[i].inputs or ()]
        try:
            scored = np.asarray(self.scorer(inputs), dtype=np.float64)
            _score_rows(scored, len(inputs))  # checked here: a bad answer drops only AUC
        except Exception as exc:  # a scorer's failure never stops the other metrics
            warn(
                f"cannot score the inputs of {len(wanted)} labelled prediction(s) (the first: "
                f"{items[wanted[0]].prediction_id}): {exc!r}; their AUC is left out"
            )
            return scores
        start = 0
        for i in wanted:
            end = start + len(items[i].inputs or ())
            scores[i] = scored[start:end]
            start = end
        return scores

    def update_from_registry(self) -> int:
        """Read the feedback received since the last update; return how many rows."""
        if self.registry is None or self.name is None:
            raise UsageError("update_from_registry needs the tracker's registry and name")
        since = self._since
        feedback = self.registry.feedback(self.name, since=since)
        if since is not None:
            feedback = [f for f in feedback if f.received_at > since]
        return self.add_feedback(feedback)

    def check(self) -> list[PerformanceReport]:
        """Compare every tracked metric of the window with its baseline.

        A metric that newly drops calls the ``on_performance_drop`` hook (and is stored as
        an alert when the tracker has a registry); it alerts again only after recovering.
        """
        with self._lock:
            y = np.asarray(list(self._labels), dtype=object)
            p = np.asarray(list(self._outputs), dtype=object)
            scores = list(self._scores)
            start, end = self._start, self._end
        reports = [
            self._auc_report(y, scores, start, end)
            if metric == "roc_auc"
            else self._report(metric, y, p, start, end)
            for metric in self.metrics
        ]
        for report in reports:
            if report.drop and report.metric not in self._alerted:
                self._alerted.add(report.metric)
                self._alert(report)
            elif report.status == "ok":
                self._alerted.discard(report.metric)
        return reports

    def _alert(self, report: PerformanceReport) -> None:
        from modelkit.plugins import notify

        notify("on_performance_drop", monitor=self.monitor, report=report)
        if self.registry is not None:
            from modelkit.monitoring.alerts import store_alert

            store_alert(
                self.registry, self.monitor, "performance", report.to_dict(), name=self.name
            )

    def _auc_report(
        self, y: np.ndarray, scores: list[Any], start: Any, end: Any
    ) -> PerformanceReport:
        from scipy.special import ndtri

        baseline = float(self.baseline["roc_auc"])
        threshold = baseline - self.tolerance.get("roc_auc", DEFAULT_TOLERANCE["roc_auc"])
        scored = [i for i, score in enumerate(scores) if score is not None]
        estimate = None
        if len(scored) >= self.min_rows:
            estimate = roc_auc(
                y[scored], [scores[i] for i in scored], classes=self.classes, positive=self.positive
            )
        common: dict[str, Any] = {"metric": "roc_auc", "baseline": baseline}
        common |= {"threshold": threshold, "n": len(scored), "model": self.name}
        common |= {"start": start, "end": end}
        if estimate is None:
            return PerformanceReport(
                value=math.nan, low=math.nan, high=math.nan, status="insufficient data", **common
            )
        value, se = estimate
        z = float(ndtri(1 - self.alpha))
        low, high = max(0.0, value - z * se), min(1.0, value + z * se)
        status = "drop" if high < threshold else "ok"
        return PerformanceReport(value=value, low=low, high=high, status=status, **common)

    def _report(
        self, metric: str, y: np.ndarray, p: np.ndarray, start: Any, end: Any
    ) -> PerformanceReport:
        from scipy.special import ndtri

        baseline = float(self.baseline[metric])
        higher = HIGHER_IS_BETTER[metric]
        tolerance = self.tolerance.get(metric, DEFAULT_TOLERANCE[metric])
        threshold = baseline - tolerance if higher else baseline * (1 + tolerance)
        n = int(y.size)
        common: dict[str, Any] = {
            "metric": metric,
            "baseline": baseline,
            "threshold": threshold,
            "n": n,
        }
        common |= {"model": self.name, "start": start, "end": end}
        if n < self.min_rows:
            return PerformanceReport(
                value=math.nan, low=math.nan, high=math.nan, status="insufficient data", **common
            )
        z = float(ndtri(1 - self.alpha))
        if metric == "accuracy":
            hits = float(np.sum(y == p))
            value = hits / n
            low, high = _wilson(hits, n, z)
        elif metric == "f1":
            positive = self.positive
            if positive is None and self.classes is not None and len(self.classes) == 2:
                positive = self.classes[1]
            value = f1_score(y, p, positive)
            rng = np.random.default_rng(0)
            draws = [
                f1_score(y[idx], p[idx], positive)
                for idx in rng.integers(0, n, size=(_BOOTSTRAP, n))
            ]
            low, high = (float(q) for q in np.quantile(draws, [self.alpha, 1 - self.alpha]))
        else:
            try:
                errors = np.asarray(y, dtype=np.float64) - np.asarray(p, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"{metric} needs numeric outputs and labels: {exc}") from exc
            terms = errors * errors if metric == "rmse" else np.abs(errors)
            mean, se = float(terms.mean()), float(terms.std(ddof=1)) / math.sqrt(n)
            low_t, high_t = max(0.0, mean - z * se), mean + z * se
            if metric == "rmse":
                value, low, high = math.sqrt(mean), math.sqrt(low_t), math.sqrt(high_t)
            else:
                value, low, high = mean, low_t, high_t
        drop = high < threshold if higher else low > threshold
        return PerformanceReport(
            value=value, low=low, high=high, status="drop" if drop else "ok", **common
        )


def _score_rows(scores: Any, n: int) -> list[Any]:
    """One score per row: ``None`` (no score: ``None`` or NaN given), a float (1-D scores)
    or a float array (2-D scores)."""
    if scores is None:
        return [None] * n
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"scores must be numbers (1-D or 2-D): {exc}") from exc
    if array.ndim not in (1, 2):
        raise UsageError(f"scores must be 1-D or 2-D, got shape {array.shape}")
    rows: list[Any] = [
        (row if array.ndim == 2 else float(row)) if np.isfinite(row).all() else None
        for row in array  # a row with NaN (None given) has no score
    ]
    if len(rows) != n:
        raise UsageError(f"got {len(rows)} rows of scores for {n} outputs; give one per row")
    return rows


def _placements(positive: np.ndarray, negative: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's placement values: for each positive the share of negatives scored
    below it, for each negative the share of positives scored above it (ties count half)."""
    from scipy.stats import rankdata

    m, n = positive.size, negative.size
    ranks = rankdata(np.concatenate((positive, negative)))
    below = (ranks[:m] - rankdata(positive)) / n
    above = 1 - (ranks[m:] - rankdata(negative)) / m
    return float(below.mean()), below, above


def roc_auc(
    labels: Any,
    scores: Sequence[Any],
    *,
    classes: Sequence[Any] | None = None,
    positive: Any = None,
) -> tuple[float, float] | None:
    """ROC AUC and its standard error (DeLong), or ``None`` when a class is missing.

    ``scores``: one float per row (binary: the ``positive`` class's score, by default the
    larger label) or one array of class scores per row, in the order of ``classes``
    (default: the sorted labels). Two columns are binary (column 1 scores ``classes[1]``);
    more give the macro average of one-vs-rest AUCs over the classes present, whose
    standard error comes from each row's influence on every class's AUC (rows are the
    positives of one class and negatives of the others, so the AUCs are correlated).
    """
    y = np.asarray(labels, dtype=object)
    if all(np.ndim(score) == 0 for score in scores):
        matrix = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
        names = sorted(set(y.tolist()), key=_order)
        if len(names) != 2:
            return None
        targets = [names[1] if positive is None else positive]
    else:
        widths = {np.size(score) for score in scores}
        if len(widths) != 1:
            raise UsageError(f"rows of scores have different lengths: {sorted(widths)}")
        matrix = np.vstack([np.asarray(score, dtype=np.float64) for score in scores])
        names = list(classes) if classes is not None else sorted(set(y.tolist()), key=_order)
        if len(names) != matrix.shape[1]:
            if classes is not None:
                raise UsageError(
                    f"scores have {matrix.shape[1]} columns but classes names {len(names)}: "
                    f"{list(names)}"
                )
            return None  # some classes not seen yet: their columns cannot be named
        if matrix.shape[1] == 2:
            column = 1 if positive is None else names.index(positive)
            matrix, targets = matrix[:, [column]], [names[column]]
        else:
            targets = names
    if not np.isfinite(matrix).all():
        raise UsageError("scores must be finite numbers")
    aucs, influence = [], np.zeros(y.size)
    for j, target in enumerate(targets):
        hit = y == target
        m, n = int(hit.sum()), int((~hit).sum())
        if m < 2 or n < 2:
            continue
        auc, below, above = _placements(matrix[hit, j], matrix[~hit, j])
        aucs.append(auc)
        part = np.empty(y.size)
        part[hit] = (below - auc) / math.sqrt(m * (m - 1))
        part[~hit] = (above - auc) / math.sqrt(n * (n - 1))
        influence += part
    if not aucs:
        return None
    k = len(aucs)
    return float(np.mean(aucs)), float(math.sqrt(np.sum((influence / k) ** 2)))


def _order(value: Any) -> tuple[str, Any]:
    """Sort key for labels of any type (numbers by value, others by text)."""
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return ("", float(value))
    return (type(value).__name__, str(value))
