"""What a drift check returns: :class:`DriftReport`, one :class:`FeatureDrift` per test.

A report always carries both verdicts:

- *significance*: is there any difference at all? Two-sample tests per feature, combined
  with a Holm-Šidák step-down so that the chance of a false alarm on the whole dataset is
  ``alpha``;
- *relevance*: is a difference larger than a margin? An effect size per feature with a
  simultaneous lower confidence bound; drift when a bound exceeds its margin.

``mode`` says which one decides ``drift`` (by default relevance above 10,000 current rows,
where tests flag differences too small to matter). Features are ranked by evidence, the most
drifted first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from modelkit._tables import cell, format_float, render_table

__all__ = ["MODES", "STATUSES", "VERDICTS", "DriftReport", "FeatureDrift"]

MODES = ("significance", "relevance")
"""The two verdict modes (``"auto"`` chooses one by the number of current rows)."""
VERDICTS = ("drift", "no drift", "insufficient data")
STATUSES = ("drift", "ok", "insufficient data")


def _tuple(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(values)


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@attrs.frozen(kw_only=True)
class FeatureDrift:
    """The verdict on one feature, one output column, or the dependence between features.

    ``role`` is ``"input"``, ``"output"`` or ``"joint"`` (the dependence check); ``kind`` is
    ``"numeric"``, ``"categorical"`` or ``"dependence"``. ``p_value`` is the feature's
    two-sample p-value and ``p_adjusted`` after the dataset-level correction (both ``None``
    when there was too little data). ``aspect`` names what moved most (``location``,
    ``scale``, ``shape``, ``levels``, ``new levels``, ``missing``, ``correlation``).
    ``metric`` is the effect size (``wasserstein``: Wasserstein-1 distance on the reference's
    quantile scale, 0 to 1; ``tv``: total variation distance; ``missing``: change of the
    missing rate; ``correlation``: largest change of a correlation), ``effect`` its estimate
    and ``effect_low``/``effect_high`` a simultaneous confidence interval; ``margin`` is the
    relevance margin. ``detail`` says in words what changed.
    """

    name: str
    role: str
    kind: str
    status: str
    n_reference: int
    n_current: int
    p_value: float | None
    p_adjusted: float | None
    significant: bool
    relevant: bool
    aspect: str
    metric: str
    effect: float
    effect_low: float
    effect_high: float
    margin: float
    detail: str = ""

    @property
    def evidence(self) -> float:
        """``-log10(p_value)`` (0 when untested): what significance ranking uses."""
        if self.p_value is None:
            return 0.0
        return -math.log10(max(self.p_value, 1e-300))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = attrs.asdict(self)
        for key in ("p_value", "p_adjusted", "effect", "effect_low", "effect_high"):
            out[key] = _round(out[key])
        return out


@attrs.frozen(kw_only=True)
class DriftReport:
    """The outcome of comparing a window of live data with the reference.

    ``verdict`` is ``"drift"``, ``"no drift"`` or ``"insufficient data"`` (fewer than
    ``min_rows`` current or reference rows: never a guess); ``drift`` is the verdict of
    ``mode``, while ``significance_drift`` and ``relevance_drift`` are both always given.
    ``features`` are ranked by evidence (in the deciding mode), the most drifted first.
    """

    verdict: str
    mode: str
    alpha: float
    significance_drift: bool
    relevance_drift: bool
    n_reference: int
    n_current: int
    features: tuple[FeatureDrift, ...] = attrs.field(converter=_tuple)
    start: datetime | None = None
    end: datetime | None = None
    examples: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    model: str | None = None

    @property
    def drift(self) -> bool:
        """Whether the deciding mode found drift."""
        return self.verdict == "drift"

    @property
    def drifted(self) -> tuple[FeatureDrift, ...]:
        """The features the deciding mode flags, most drifted first."""
        return tuple(f for f in self.features if f.status == "drift")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``modelkit monitor check --json`` prints)."""
        return {
            "verdict": self.verdict,
            "drift": self.drift,
            "mode": self.mode,
            "alpha": self.alpha,
            "significance_drift": self.significance_drift,
            "relevance_drift": self.relevance_drift,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "model": self.model,
            "examples": {k: list(v) for k, v in self.examples.items()},
            "features": [f.to_dict() for f in self.features],
        }

    def to_json(self) -> str:
        """The report as a JSON document."""
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        """The per-feature table and the verdict, as ``modelkit monitor check`` prints them."""
        rows = []
        for f in self.features:
            interval = (
                "-"
                if f.status == "insufficient data"
                else f"[{format_float(f.effect_low, 3)}, {format_float(f.effect_high, 3)}]"
            )
            rows.append(
                (
                    f.name,
                    f.status,
                    cell(f.p_adjusted if f.p_adjusted is None else _p(f.p_adjusted)),
                    f.metric,
                    format_float(f.effect, 3),
                    interval,
                    format_float(f.margin, 3),
                    f.aspect,
                    f.detail,
                )
            )
        table = render_table(
            ("FEATURE", "STATUS", "P(ADJ)", "METRIC", "EFFECT", "CI", "MARGIN", "ASPECT", "DETAIL"),
            rows,
        )
        flags = (
            f"significance: {'drift' if self.significance_drift else 'no drift'}, "
            f"relevance: {'drift' if self.relevance_drift else 'no drift'}"
        )
        head = (
            f"verdict: {self.verdict} ({self.mode} mode; {flags}; alpha={self.alpha:g}; "
            f"{self.n_current:,} current vs {self.n_reference:,} reference rows)"
        )
        return f"{table}\n\n{head}"


def _p(value: float) -> str:
    if value < 1e-4:
        return f"{value:.1e}"
    return f"{value:.4f}"
