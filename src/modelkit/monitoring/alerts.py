"""Storing alerts in the registry's database, so that their history survives restarts.

:func:`store_alert` records one (a registry that cannot take it only warns);
:func:`already_stored` tells whether an equivalent alert is stored already, so that several
processes watching the same data (the workers of one server reading the same labels) store
it once. :func:`warn` is how every part of monitoring reports a problem without failing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelkit.exceptions import ModelkitError, MonitoringWarning

if TYPE_CHECKING:
    from modelkit.monitoring.monitor import Monitor
    from modelkit.registry import Registry

__all__ = ["already_stored", "store_alert", "warn"]

logger = logging.getLogger("modelkit.monitoring")


def warn(message: str, stacklevel: int = 3) -> None:
    """Warn with a :class:`MonitoringWarning`; never raise, even where warnings are errors.

    Monitoring runs beside requests and in background threads: a warning filter set to
    "error" must not turn a monitoring problem into a failed request or a dead thread, so
    the warning is then logged instead.
    """
    try:
        warnings.warn(MonitoringWarning(message), stacklevel=stacklevel)
    except Exception:  # an "error" filter: log instead, a request or the thread goes on
        logger.warning("MonitoringWarning: %s", message)


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
        warn(
            f"could not store a {kind} alert of {model!r} in registry {registry.url}: "
            f"{exc}; the alert was still reported to the hooks",
            stacklevel=4,
        )


def already_stored(
    registry: Registry,
    name: str,
    kind: str,
    *,
    since: datetime,
    version: int | None = None,
    match: Mapping[str, Any] | None = None,
) -> bool:
    """Whether an alert of model ``name`` and ``kind`` raised at or after ``since`` is stored.

    Only alerts of ``version`` (when given) whose details hold every item of ``match`` count.
    A registry that cannot answer says ``False`` (the alert is then stored again rather than
    lost).
    """
    try:
        found = registry.alerts(name, kind=kind, since=since)
    except ModelkitError:
        return False
    wanted = dict(match or {})
    for alert in found:
        if version is not None and alert.version != version:
            continue
        if all(alert.details.get(key) == value for key, value in wanted.items()):
            return True
    return False
