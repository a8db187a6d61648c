"""Monitoring: data drift, performance from delayed labels, and infrastructure health.

- :class:`Monitor` fits a reference (:class:`Reference`), observes live batches in windows
  (:class:`Window`) as constant-memory, exactly mergeable summaries (:class:`WindowSummary`)
  and checks them (:func:`check_drift`) into a :class:`DriftReport` with both a
  significance and a relevance verdict; :class:`AsyncObserver` feeds it from a background
  thread.
- :class:`PerformanceTracker` joins delayed labels with predictions and compares rolling
  metrics with the training-time baseline.
- :class:`HealthTracker` keeps latency, error, throughput and queue figures for ``/metrics``
  and raises SLO alerts.

Alerts call the ``on_drift``, ``on_performance_drop`` and ``on_health_alert`` hooks and, with
a registry, are stored in its database (:meth:`modelkit.Registry.alerts`).
"""

from modelkit.monitoring.drift import DEFAULT_MARGINS, DriftConfig, check_drift
from modelkit.monitoring.health import SLO, HealthAlert, HealthTracker
from modelkit.monitoring.monitor import AsyncObserver, Monitor, Window
from modelkit.monitoring.performance import PerformanceReport, PerformanceTracker
from modelkit.monitoring.report import DriftReport, FeatureDrift
from modelkit.monitoring.summary import JointReference, Reference, WindowSummary

__all__ = [
    "DEFAULT_MARGINS",
    "SLO",
    "AsyncObserver",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "HealthAlert",
    "HealthTracker",
    "JointReference",
    "Monitor",
    "PerformanceReport",
    "PerformanceTracker",
    "Reference",
    "Window",
    "WindowSummary",
    "check_drift",
]
