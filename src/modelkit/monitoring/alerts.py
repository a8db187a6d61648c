"""Storing alerts in the registry's database, so that their history survives restarts."""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelkit.exceptions import ModelkitError, MonitoringWarning

if TYPE_CHECKING:
    from modelkit.monitoring.monitor import Monitor
    from modelkit.registry import Registry

__all__ = ["store_alert"]


def store_alert(
    registry: Registry,
    monitor: Monitor | None,
    kind: str,
    details: dict[str, Any],
    *,
    at: datetime | None = None,
    name: str | None = None,
    version: int | None = None,
) -> None:
    """Record an alert; a registry that cannot take it only warns (monitoring goes on)."""
    model = name or (monitor.name if monitor is not None else None) or "-"
    if version is None and monitor is not None:
        version = monitor.version
    try:
        registry.record_alert(model, kind, details, version=version, at=at)
    except ModelkitError as exc:
        warnings.warn(
            MonitoringWarning(
                f"could not store a {kind} alert of {model!r} in registry {registry.url}: "
                f"{exc}; the alert was still reported to the hooks"
            ),
            stacklevel=3,
        )
