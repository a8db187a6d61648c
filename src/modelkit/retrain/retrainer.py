"""The retraining loop: triggers, a lease, a challenger, the gate, promotion and rollback.

A :class:`Retrainer` follows one model alias (``churn@production``) under a
:class:`~modelkit.retrain.RetrainPolicy`. Each :meth:`~Retrainer.step`:

1. closes the watch window of a recent promotion when enough newly labelled rows arrived:
   the old champion is scored on the same recorded inputs, and a new champion that is worse
   by the policy's margin, with the gate's paired test, is rolled back;
2. evaluates the triggers since the last retrain; held back by the cooldown, the frequency
   limit, another holder's lease or a hook's veto, it records a ``skipped`` event;
3. otherwise retrains (:meth:`~Retrainer.retrain`): time-ordered split (the newest rows are
   held out), a challenger trained on the older rows, both models scored on the held-out
   rows, and the challenger promoted (the alias moves; servers following it hot-swap), left
   pending for approval, or rejected (archived).

Every decision is a :class:`~modelkit.retrain.RetrainEvent` in the registry. One retrain per
model runs at a time across processes and hosts: each takes the model's lease in the
registry database first. :meth:`~Retrainer.start` runs the loop in a daemon thread beside a
server; ``modelkit watch churn@production`` runs it as its own process.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import uuid
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit.exceptions import (
    HookFailedWarning,
    ModelkitError,
    NotFoundError,
    RegistryError,
    RetrainVetoError,
)
from modelkit.plugins import get_plugin_manager, notify
from modelkit.registry import check_alias, check_model_name
from modelkit.retrain._data import feedback_rows, load_data, to_features
from modelkit.retrain._stats import LOWER_IS_BETTER, Comparison, compare, metric_value
from modelkit.retrain.policy import RetrainPolicy, Schedule

if TYPE_CHECKING:
    from modelkit._retrain_store import RetrainEvent
    from modelkit.model import Model
    from modelkit.registry import ModelVersion, Registry

__all__ = ["RetrainOutcome", "RetrainVetoError", "Retrainer", "approve"]

logger = logging.getLogger("modelkit.retrain")

_RETRAIN_KINDS = ("triggered",)
_PROMOTION_KINDS = ("promoted", "approved")
_WATCH_KINDS = ("promoted", "approved", "kept", "rolled_back")


@attrs.frozen(kw_only=True)
class RetrainOutcome:
    """What one retrain (or one step of the loop) did.

    ``decision`` is the kind of the last event stored (``"promoted"``, ``"rejected"``,
    ``"pending"``, ``"skipped"``, ``"failed"``, ...) or ``"idle"`` when nothing fired;
    ``events`` every event stored, oldest first; ``champion`` and ``challenger`` the versions;
    ``comparison`` the gate's paired comparison when there was one.
    """

    decision: str
    events: tuple[RetrainEvent, ...] = ()
    champion: int | None = None
    challenger: int | None = None
    comparison: Comparison | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "decision": self.decision,
            "champion": self.champion,
            "challenger": self.challenger,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "events": [e.to_dict() for e in self.events],
        }


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _default_holder() -> str:
    from modelkit.registry import _default_actor

    return f"{_default_actor()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _passes(comparison: Comparison, margin: float, alpha: float) -> bool:
    return comparison.improvement >= margin and comparison.p_value < alpha


def _verdict(comparison: Comparison, margin: float, alpha: float, passed: bool) -> str:
    c = comparison
    head = (
        f"{c.metric} {c.b:.4f} vs {c.a:.4f} on {c.n} held-out rows "
        f"(improvement {c.improvement:+.4f}, p={c.p_value:.3g} by {c.test})"
    )
    if passed:
        return f"{head}: beats the champion by >= {margin:g} at alpha={alpha:g}"
    why = []
    if c.improvement < margin:
        why.append(f"improvement below the margin {margin:g}")
    if c.p_value >= alpha:
        why.append(f"not significant at alpha={alpha:g}")
    return f"{head}: {' and '.join(why)}"


def _ask_hooks(
    registry: Registry, name: str, alias: str, reasons: list[dict[str, Any]]
) -> str | None:
    """Call ``on_retrain_triggered`` on every plugin; return the veto reason, if any."""
    hook = get_plugin_manager().hook.on_retrain_triggered
    for impl in reversed(hook.get_hookimpls()):
        kwargs = {"registry": registry, "name": name, "alias": alias, "reasons": reasons}
        try:
            answer = impl.function(*[kwargs[arg] for arg in impl.argnames])
        except RetrainVetoError as exc:
            return f"vetoed by plugin {impl.plugin_name!r}: {exc}"
        except Exception as exc:
            warnings.warn(
                HookFailedWarning(
                    f"plugin {impl.plugin_name!r} raised in on_retrain_triggered: "
                    f"{type(exc).__name__}: {exc}; the hook was skipped"
                ),
                stacklevel=3,
            )
            continue
        if answer is False:
            return f"vetoed by plugin {impl.plugin_name!r}"
    return None


@attrs.define(kw_only=True)
class Retrainer:
    """Keep ``name@alias`` trained under ``policy``; see the module docstring.

    ``registry`` is shared with the caller (the loop thread uses its own connections);
    ``holder`` names this loop in leases (default ``user@host:pid:random``); ``actor`` in
    alias changes and events (default ``$MODELKIT_ACTOR`` or ``user@host``).
    """

    registry: Registry
    name: str = attrs.field(validator=lambda _i, _a, v: check_model_name(v))
    alias: str = attrs.field(default="production", validator=lambda _i, _a, v: check_alias(v))
    policy: RetrainPolicy = attrs.field(
        factory=RetrainPolicy, validator=attrs.validators.instance_of(RetrainPolicy)
    )
    holder: str = attrs.field(factory=_default_holder)
    actor: str | None = None
    _last_skip: str | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False)

    @property
    def uri(self) -> str:
        """``NAME@ALIAS``."""
        return f"{self.name}@{self.alias}"

    # -- the events --------------------------------------------------------------------------

    def _record(self, kind: str, **fields: Any) -> RetrainEvent:
        event = self.registry.record_retrain_event(
            self.name, kind, alias=self.alias, actor=self.actor, **fields
        )
        logger.info("%s: %s %s", self.uri, kind, event.reason or "")
        return event

    def _last_retrain(self) -> datetime | None:
        found = self.registry.retrain_events(self.name, kind=_RETRAIN_KINDS, limit=1)
        return found[0].at if found else None

    # -- triggers ----------------------------------------------------------------------------

    def triggers(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """The triggers of the policy that fire now, one dict each (empty: none fires)."""
        now = now or _now()
        policy = self.policy
        champion = self.registry.resolve(self.uri)
        last = self._last_retrain()
        since = max(t for t in (last, champion.created_at) if t is not None)
        reasons: list[dict[str, Any]] = []
        for kind, wanted in (("drift", policy.on_drift), ("performance", policy.on_performance)):
            if not wanted:
                continue
            alerts = self.registry.alerts(self.name, kind=kind, since=since)
            if alerts:
                first = min(a.at for a in alerts)
                reasons.append({"trigger": kind, "alerts": len(alerts), "first_at": _iso(first)})
        if policy.performance_drop is not None or policy.min_new_labels is not None:
            feedback = self.registry.feedback(self.name, since=since)
            if policy.performance_drop is not None:
                drop = self._measured_drop(champion, feedback)
                if drop is not None:
                    reasons.append(drop)
            if policy.min_new_labels is not None:
                _, labels, _, skipped = feedback_rows(feedback)
                n = len(labels) + skipped
                if n >= policy.min_new_labels:
                    reasons.append(
                        {"trigger": "data_volume", "new_labels": n, "since": _iso(since)}
                    )
        if policy.every is not None:
            start = last or champion.created_at
            if isinstance(policy.every, Schedule):
                due = policy.every.next_after(start)
            else:
                due = start + timedelta(seconds=policy.every)
            if now >= due:
                reasons.append({"trigger": "schedule", "due": _iso(due)})
        return reasons

    def _measured_drop(
        self, champion: ModelVersion, feedback: Sequence[Any]
    ) -> dict[str, Any] | None:
        metric = self.policy.gate.metric
        baseline = champion.metrics.get(metric)
        if baseline is None or not math.isfinite(baseline):
            return None
        _, labels, outputs, _ = feedback_rows(feedback, version=champion.version)
        pairs = [(y, p) for y, p in zip(labels, outputs, strict=True) if p is not None]
        if len(pairs) < self.policy.min_rows:
            return None
        y = np.asarray([p[0] for p in pairs], dtype=object)
        p = np.asarray([p[1] for p in pairs], dtype=object)
        live = metric_value(metric, y, p, positive=self.policy.gate.positive)
        drop = (live - baseline) if metric in LOWER_IS_BETTER else (baseline - live)
        assert self.policy.performance_drop is not None
        if not drop >= self.policy.performance_drop:
            return None
        return {
            "trigger": "performance_drop",
            "metric": metric,
            "baseline": baseline,
            "live": live,
            "drop": drop,
            "n": len(pairs),
        }

    def _limit(self, now: datetime) -> str | None:
        """Why the cooldown or the frequency limit holds a retrain back (``None``: it does not)."""
        policy = self.policy
        last = self._last_retrain()
        if (
            last is not None
            and policy.cooldown > 0
            and now < last + timedelta(seconds=policy.cooldown)
        ):
            return f"cooldown: the last retrain was at {_iso(last)}, cooldown {policy.cooldown:g}s"
        if policy.max_retrains is not None:
            since = now - timedelta(seconds=policy.max_retrains_window)
            recent = self.registry.retrain_events(self.name, kind=_RETRAIN_KINDS, since=since)
            if len(recent) >= policy.max_retrains:
                return (
                    f"max frequency: {len(recent)} retrain(s) in the last "
                    f"{policy.max_retrains_window:g}s (limit {policy.max_retrains})"
                )
        return None

    def _skip(self, cause: str, reason: str, **fields: Any) -> RetrainOutcome:
        """Record a ``skipped`` event once per cause in a row (a poll loop does not repeat it)."""
        if self._last_skip == cause:
            return RetrainOutcome(decision="skipped")
        self._last_skip = cause
        event = self._record("skipped", reason=reason, **fields)
        return RetrainOutcome(decision="skipped", events=(event,), champion=event.champion)

    # -- the loop ----------------------------------------------------------------------------

    def step(self) -> RetrainOutcome:
        """One pass of the loop: close a watch window, then retrain if a trigger fires."""
        watched = self.check_watch()
        if watched is not None and watched.decision == "rolled_back":
            return watched
        now = _now()
        reasons = self.triggers(now)
        if not reasons:
            return watched or RetrainOutcome(decision="idle")
        return self.retrain(reasons=reasons, now=now)

    def retrain(
        self,
        *,
        reasons: list[dict[str, Any]] | None = None,
        promote: bool = True,
        now: datetime | None = None,
    ) -> RetrainOutcome:
        """Retrain now (``reasons`` default: a manual request) and judge the challenger.

        The cooldown and frequency limits apply to triggered retrains only; the lease and the
        hooks always do. With ``promote=False`` a passing challenger is registered and
        recorded as ``pending`` (approve it with :func:`approve`) instead of promoted.
        """
        now = now or _now()
        reasons = reasons or [{"trigger": "manual"}]
        champion = self.registry.resolve(self.uri)
        base = {"champion": champion.version, "details": {"reasons": reasons}}
        if reasons[0].get("trigger") != "manual":
            limit = self._limit(now)
            if limit is not None:
                return self._skip(limit.split(":", 1)[0], limit, **base)
        lease = self.registry.acquire_lease(
            self.name, self.holder, seconds=self.policy.lease_seconds
        )
        if lease is None:
            current = self.registry.lease(self.name)
            holder = current.holder if current is not None else "another process"
            return self._skip("lease", f"lease held by {holder}: a retrain is in progress", **base)
        renewer = _Renewer(self.registry, self.name, self.holder, self.policy.lease_seconds)
        renewer.start()
        try:
            return self._retrain_holding_lease(champion, reasons, promote=promote, base=base)
        finally:
            renewer.stop()
            self.registry.release_lease(self.name, self.holder)

    def _retrain_holding_lease(
        self,
        champion: ModelVersion,
        reasons: list[dict[str, Any]],
        *,
        promote: bool,
        base: dict[str, Any],
    ) -> RetrainOutcome:
        policy = self.policy
        since = self._data_since(reasons)
        champion_model = self.registry.load(f"{self.name}/{champion.version}")
        data = load_data(self.registry, self.name, policy, champion_model.signature, since=since)
        n_hold = policy.gate.holdout_rows(data.n)
        if data.n < policy.min_rows or data.n - n_hold < 2:
            return self._skip(
                "data",
                f"only {data.n} labelled row(s) from {data.source}; a retrain needs "
                f">= {policy.min_rows} (and more than the {n_hold} held out)",
                **base,
            )
        veto = _ask_hooks(self.registry, self.name, self.alias, reasons)
        if veto is not None:
            return self._skip("veto", veto, **base)
        self._last_skip = None
        split = data.n - n_hold
        numbers = {
            "reasons": reasons,
            "rows": data.n,
            "train_rows": split,
            "holdout_rows": n_hold,
            "source": data.source,
            "rows_without_inputs": data.skipped,
            "data_since": _iso(since),
        }
        events = [
            self._record(
                "triggered",
                champion=champion.version,
                reason=", ".join(str(r["trigger"]) for r in reasons),
                details=numbers,
            )
        ]
        X_train, y_train = _rows(data.X, 0, split), data.y[:split]
        X_hold, y_hold = _rows(data.X, split, data.n), data.y[split:]
        try:
            challenger, challenger_model, run_id = self._train(champion_model, X_train, y_train)
        except Exception as exc:
            events.append(
                self._record(
                    "failed",
                    champion=champion.version,
                    reason=f"training failed: {type(exc).__name__}: {exc}",
                    details=numbers,
                )
            )
            return RetrainOutcome(
                decision="failed", events=tuple(events), champion=champion.version
            )
        numbers["run_id"] = run_id
        events.append(
            self._record(
                "trained",
                champion=champion.version,
                challenger=challenger.version,
                reason=f"trained on {split} rows (run {run_id[:12]})",
                details=numbers,
            )
        )
        self.registry.renew_lease(self.name, self.holder, seconds=policy.lease_seconds)
        return self._judge(
            events,
            numbers,
            champion=champion.version,
            challenger=challenger.version,
            predictions=(champion_model.predict(X_hold), challenger_model.predict(X_hold)),
            y=y_hold,
            promote=promote,
        )

    def _judge(
        self,
        events: list[RetrainEvent],
        numbers: dict[str, Any],
        *,
        champion: int,
        challenger: int,
        predictions: tuple[Any, Any],
        y: np.ndarray,
        promote: bool,
    ) -> RetrainOutcome:
        """Score both models on the held-out rows; reject, leave pending, or promote."""
        gate = self.policy.gate
        comparison = compare(
            gate.metric,
            y,
            *predictions,
            n_resamples=gate.n_resamples,
            alpha=gate.alpha,
            seed=gate.seed,
            positive=gate.positive,
        )
        passed = _passes(comparison, gate.margin, gate.alpha)
        verdict = _verdict(comparison, gate.margin, gate.alpha, passed)
        judged = {
            **numbers,
            "gate": comparison.to_dict(),
            "margin": gate.margin,
            "alpha": gate.alpha,
            "passed": passed,
        }
        kind, reason = "promoted", verdict
        if not passed:
            kind = "rejected"
            self.registry.set_tags(self.name, challenger, {"retrain": "rejected"})
            self.registry.archive(self.name, challenger)
        elif not promote or self.policy.approval == "manual":
            kind = "pending"
            reason = (
                f"{verdict}; waiting for approval "
                f"(modelkit models approve {self.name} {challenger})"
            )
            self.registry.set_tags(self.name, challenger, {"retrain": "pending"})
        else:
            current = self.registry.aliases(self.name).get(self.alias)
            if current != champion:
                kind = "rejected"
                reason = f"{self.uri} moved to {current} during the retrain; not promoted"
        if kind == "promoted":
            events.append(self._promote(champion, challenger, verdict, judged, "promoted"))
        else:
            events.append(
                self._record(
                    kind, reason=reason, details=judged, champion=champion, challenger=challenger
                )
            )
        return RetrainOutcome(
            decision=kind,
            events=tuple(events),
            champion=champion,
            challenger=challenger,
            comparison=comparison,
        )

    def _promote(
        self, old: int, new: int, verdict: str, details: Mapping[str, Any], kind: str
    ) -> RetrainEvent:
        self.registry.set_tags(self.name, new, {"retrain": kind})
        self.registry.set_alias(
            self.name, self.alias, new, actor=self.actor, reason=f"retrain {kind}: {verdict}"
        )
        event = self._record(kind, champion=old, challenger=new, reason=verdict, details=details)
        notify("on_model_promoted", registry=self.registry, event=event)
        return event

    def _data_since(self, reasons: list[dict[str, Any]]) -> datetime | None:
        policy = self.policy
        starts: list[datetime] = []
        if policy.window_seconds is not None:
            starts.append(_now() - timedelta(seconds=policy.window_seconds))
        if policy.since_alert:
            firsts = [r["first_at"] for r in reasons if r.get("first_at")]
            if firsts:
                starts.append(min(datetime.fromisoformat(f) for f in firsts))
        return max(starts) if starts else None

    def _train(self, champion: Model, X: Any, y: np.ndarray) -> tuple[ModelVersion, Model, str]:
        """Train and register the challenger; return its version, model and run id."""
        tags = {"retrain": "challenger", "retrain.champion": f"{self.name}@{self.alias}"}
        if self.policy.train is None:
            from sklearn.base import clone

            from modelkit.training import train

            result = train(
                clone(champion.estimator),
                X,
                y,
                name=self.name,
                registry=self.registry,
                cv=self.policy.cv,
                tags=tags,
            )
            return result.version, result.model, result.run.id
        return self._train_with_callable(X, y, tags)

    def _train_with_callable(
        self, X: Any, y: np.ndarray, tags: Mapping[str, str]
    ) -> tuple[ModelVersion, Model, str]:
        import time

        from modelkit.artifact import Artifact
        from modelkit.data import Dataset

        assert self.policy.train is not None
        dataset = Dataset(X, y)
        run = self.registry.start_run(
            self.name,
            params={"train": getattr(self.policy.train, "__qualname__", repr(self.policy.train))},
            tags=tags,
            dataset_fingerprint=dataset.fingerprint,
        )
        try:
            started = time.perf_counter()
            fitted = self.policy.train(X, y)
            fit_time = time.perf_counter() - started
            artifact = Artifact.from_model(
                fitted,
                name=self.name,
                sample=dataset.X,
                profile=dataset.profile(),
                fingerprint=dataset.fingerprint,
                tags=tags,
            )
            version = self.registry.register(self.name, artifact, tags=tags, run=run.id)
        except BaseException as exc:
            self.registry.finish_run(run.id, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        self.registry.finish_run(run.id, fit_time=fit_time, version=version.version)
        return version, artifact.model, run.id

    # -- after a promotion -------------------------------------------------------------------

    def check_watch(self) -> RetrainOutcome | None:
        """Close the watch window of the latest promotion once it has enough labelled rows.

        Returns ``None`` when no window is open (no promotion, already closed, the alias
        moved since, or the policy watches nothing) or it still lacks rows; otherwise the
        outcome, ``"kept"`` or ``"rolled_back"``.
        """
        if self.policy.watch_rows == 0:
            return None
        latest = self.registry.retrain_events(self.name, kind=_WATCH_KINDS, limit=1)
        if not latest or latest[0].kind not in _PROMOTION_KINDS:
            return None
        promoted = latest[0]
        new, old = promoted.challenger, promoted.champion
        if new is None or old is None or self.registry.aliases(self.name).get(self.alias) != new:
            return None
        feedback = self.registry.feedback(self.name, since=promoted.at)
        inputs, labels, _, _ = feedback_rows(feedback, version=new)
        if len(labels) < self.policy.watch_rows:
            return None
        inputs, labels = inputs[: self.policy.watch_rows], labels[: self.policy.watch_rows]
        new_model = self.registry.load(f"{self.name}/{new}")
        old_model = self.registry.load(f"{self.name}/{old}")
        X = to_features(inputs, new_model.signature)
        gate = self.policy.gate
        comparison = compare(
            gate.metric,
            np.asarray(labels, dtype=object),
            new_model.predict(X),
            old_model.predict(to_features(inputs, old_model.signature)),
            n_resamples=gate.n_resamples,
            alpha=gate.alpha,
            seed=gate.seed,
            positive=gate.positive,
        )
        worse = _passes(comparison, self.policy.rollback_margin, gate.alpha)
        c = comparison
        summary = (
            f"live {c.metric} of {new}: {c.a:.4f}, of {old} on the same {c.n} rows: {c.b:.4f} "
            f"(p={c.p_value:.3g} by {c.test} that {old} is no better)"
        )
        details = {
            "watch": comparison.to_dict(),
            "rollback_margin": self.policy.rollback_margin,
            "alpha": gate.alpha,
            "promotion_event": promoted.id,
        }
        fields = {"champion": old, "challenger": new}
        if not worse:
            event = self._record("kept", reason=f"{summary}: kept", details=details, **fields)
            return RetrainOutcome(decision="kept", events=(event,), comparison=comparison, **fields)
        self.registry.set_alias(
            self.name, self.alias, old, actor=self.actor, reason=f"rollback: {summary}"
        )
        self.registry.set_tags(self.name, new, {"retrain": "rolled_back"})
        event = self._record(
            "rolled_back", reason=f"{summary}: rolled back", details=details, **fields
        )
        notify("on_rollback", registry=self.registry, event=event)
        return RetrainOutcome(
            decision="rolled_back", events=(event,), comparison=comparison, **fields
        )

    # -- in the background -------------------------------------------------------------------

    def run(self, interval: float, *, stop: threading.Event | None = None) -> None:
        """Call :meth:`step` every ``interval`` seconds until ``stop`` is set.

        A step that fails is logged and the loop goes on: retraining never stops serving.
        """
        stop = stop or self._stop
        while not stop.is_set():
            try:
                self.step()
            except (ModelkitError, ValueError, OSError) as exc:
                logger.warning("%s: retraining step failed: %s", self.uri, exc)
            stop.wait(interval)

    def start(self, interval: float = 60.0) -> Retrainer:
        """Run the loop in a daemon thread on its own registry connections; return self."""
        if self._thread is not None and self._thread.is_alive():
            raise RegistryError(f"the retraining loop of {self.uri} is already running")
        self._stop.clear()
        worker = attrs.evolve(self, registry=self.registry.reopen())
        worker._stop = self._stop

        def loop() -> None:
            try:
                worker.run(interval, stop=self._stop)
            finally:
                worker.registry.close()

        self._thread = threading.Thread(
            target=loop, name=f"modelkit-retrain-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background loop (after the step in progress) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class _Renewer:
    """Renews a lease every third of its length while a retrain holds it (a daemon thread)."""

    def __init__(self, registry: Registry, name: str, holder: str, seconds: float) -> None:
        self.registry, self.name, self.holder, self.seconds = registry, name, holder, seconds
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="modelkit-lease", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.seconds / 3):
            try:
                self.registry.renew_lease(self.name, self.holder, seconds=self.seconds)
            except (ModelkitError, OSError) as exc:  # the step's own renewal will refuse to go on
                logger.warning("%s: could not renew the retraining lease: %s", self.name, exc)
                return

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def _rows(X: Any, start: int, stop: int) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[start:stop]
    return X[start:stop]


def approve(
    registry: Registry,
    name: str,
    version: int,
    *,
    alias: str | None = None,
    actor: str | None = None,
) -> RetrainEvent:
    """Promote a challenger a gate left ``pending``: move its alias and record ``approved``.

    ``alias`` defaults to the one the pending decision names. Refused (NotFoundError) when no
    pending decision names ``version``, and (RegistryError) when it was already approved or
    the alias moved away from the champion it was judged against.
    """
    check_model_name(name)
    pending = [e for e in registry.retrain_events(name, kind="pending") if e.challenger == version]
    if not pending:
        raise NotFoundError(
            f"no pending retraining decision of {name!r} names version {version}; see "
            f"`modelkit models events {name}`"
        )
    decision = pending[0]
    done = registry.retrain_events(name, kind="approved", since=decision.at)
    if any(e.challenger == version for e in done):
        raise RegistryError(f"{name} version {version} was already approved")
    target = alias or decision.alias or "production"
    current = registry.aliases(name).get(target)
    if decision.champion is not None and current != decision.champion:
        raise RegistryError(
            f"{name}@{target} points to {current}, not to version {decision.champion} the "
            f"challenger was judged against; retrain again, or move the alias by hand with "
            f"`modelkit models alias {name} {target} {version}`"
        )
    retrainer = Retrainer(registry=registry, name=name, alias=target, actor=actor)
    return retrainer._promote(
        current if current is not None else version,
        version,
        (decision.reason or "").split("; waiting for approval")[0],
        {**dict(decision.details), "pending_event": decision.id},
        "approved",
    )
