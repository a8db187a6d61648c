"""Retraining: triggers, a champion/challenger gate, promotion and automatic rollback.

- :class:`RetrainPolicy` says when to retrain (drift or performance alerts, a measured
  drop, a schedule, new labelled rows; with a cooldown and a maximum frequency), on what
  data, how to train and how to judge (:class:`Gate`);
- :class:`Retrainer` runs the loop for one model alias (a thread beside a server, or
  ``modelkit watch churn@production``), holding the model's lease in the registry while it
  retrains, and stores every decision as a :class:`RetrainEvent`;
- :func:`approve` promotes a challenger left pending for a person's approval;
- :func:`compare` is the gate's paired comparison (exact McNemar mid-p for accuracy, paired
  bootstrap for other metrics).

Hooks: ``on_retrain_triggered`` (may veto: return ``False`` or raise
:class:`RetrainVetoError`), ``on_model_promoted`` and ``on_rollback``.
"""

from modelkit._retrain_store import EVENT_KINDS, Lease, RetrainEvent
from modelkit.retrain._stats import GATE_METRICS, Comparison, compare, mcnemar_midp
from modelkit.retrain.policy import APPROVALS, Gate, RetrainPolicy, Schedule
from modelkit.retrain.retrainer import Retrainer, RetrainOutcome, RetrainVetoError, approve

__all__ = [
    "APPROVALS",
    "EVENT_KINDS",
    "GATE_METRICS",
    "Comparison",
    "Gate",
    "Lease",
    "RetrainEvent",
    "RetrainOutcome",
    "RetrainPolicy",
    "RetrainVetoError",
    "Retrainer",
    "Schedule",
    "approve",
    "compare",
    "mcnemar_midp",
]
