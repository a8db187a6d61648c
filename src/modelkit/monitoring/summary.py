"""Reference and window summaries: what drift checks compare, in constant memory.

A :class:`Reference` is fitted once, from the training data or from an artifact's
:class:`~modelkit.Profile`. It holds the profile of the inputs (quantile-bin histograms of
numeric features, tracked levels of categorical ones, missing counts), optionally the profile
of the model's outputs, and, when fitted from data, a :class:`JointReference`: the
correlations of the numeric features on a bounded scale, with their sampling variance, which
the dependence check compares windows with.

A :class:`WindowSummary` describes a batch or a window of live data *against* a reference:
the same bins and levels, the same bounded scale. Its size depends on the number of features
only (a few KiB each), never on the number of rows, and two summaries of the same reference
merge exactly (:meth:`WindowSummary.merge`): counts and sums add, so the summary of shards
profiled in different threads, processes or hosts equals the summary of all the rows.
"""

from __future__ import annotations

import json
import operator
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from modelkit._fingerprint import is_pandas
from modelkit._profile import (
    EDGE_SAMPLE,
    OUTPUT,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    Profile,
    _categorical_against,
    _feature_against,
    _level_counts,
    _moments,
    _named_columns,
    _numeric_values,
    _object_numbers,
    is_categorical_dtype,
    outputs_profile,
)
from modelkit.exceptions import DataError, SignatureError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "BUCKETS",
    "CLIP",
    "JOINT_SAMPLE",
    "MAX_UNTRACKED",
    "OUTPUT",
    "JointReference",
    "JointSums",
    "Reference",
    "WindowSummary",
    "bucket_counts",
]

CLIP = 4.0
"""Numeric values enter the dependence check as ``clip((x - median) / scale, -4, 4)``."""
JOINT_SAMPLE = 200_000
"""Most rows (a fixed-seed sample) whose fourth moments estimate the correlations' variance."""
BUCKETS = 32
"""Hash buckets of a categorical feature whose reference has more levels than it tracks."""
MAX_UNTRACKED = 16
"""Untracked categorical values a window counts per feature (the most frequent; merging is
exact while a feature has at most this many distinct untracked values)."""
_BLOCK = 1 << 14
FORMAT = "modelkit.reference"
FORMAT_VERSION = 1


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _strs(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _pairs(k: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    rows, cols = np.triu_indices(k, 1)
    return rows.astype(np.intp), cols.astype(np.intp)


# -- the dependence check's reference -------------------------------------------------------


@attrs.frozen
class JointReference:
    """Correlations of the numeric features on a bounded scale, for the dependence check.

    Each numeric feature ``x`` becomes ``v = clip((x - center) / scale, -4, 4)`` (missing
    values 0, ``±inf`` ±4): a fixed, bounded transform, so every moment exists whatever the
    tails. ``corr`` holds the correlation of every pair ``(i, j), i < j`` (in the order of
    ``numpy.triu_indices``) and ``variance`` the asymptotic variance of ``sqrt(n) * (r - rho)``
    estimated from fourth moments (the delta method: no normality assumed). ``dof`` holds,
    per pair, the degrees of freedom of that variance estimate (``2 / CV²`` of the estimate),
    with which the dependence check treats each standardised change as a Student-type ratio
    rather than a normal one; empty (unknown) means exact variances.
    """

    names: tuple[str, ...] = attrs.field(converter=_strs)
    center: tuple[float, ...] = attrs.field(converter=_floats)
    scale: tuple[float, ...] = attrs.field(converter=_floats)
    corr: tuple[float, ...] = attrs.field(converter=_floats)
    variance: tuple[float, ...] = attrs.field(converter=_floats)
    n_rows: int = attrs.field(converter=operator.index)
    dof: tuple[float, ...] = attrs.field(default=(), converter=_floats)

    def __attrs_post_init__(self) -> None:
        k = len(self.names)
        pairs = k * (k - 1) // 2
        if (
            not (len(self.center) == len(self.scale) == k)
            or not (len(self.corr) == len(self.variance) == pairs)
            or len(self.dof) not in (0, pairs)
        ):
            raise DataError(
                f"a joint reference of {k} features needs {k} centers and scales and "
                f"{pairs} correlations and variances (and none or {pairs} dof), got "
                f"{len(self.center)}, {len(self.scale)}, {len(self.corr)}, "
                f"{len(self.variance)} and {len(self.dof)}"
            )
        if any(not s > 0 for s in self.scale):
            raise DataError(f"joint reference scales must be positive, got {list(self.scale)}")

    def transform(self, columns: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
        """The bounded values ``v`` of the given numeric columns (in ``names`` order), as
        an ``(n, k)`` C-contiguous array."""
        n = len(columns[0]) if columns else 0
        out = np.empty((n, len(self.names)), dtype=np.float64)
        self._fill(out, columns, 0, n)
        return out

    def _fill(
        self,
        out: NDArray[np.float64],
        columns: Sequence[NDArray[np.float64]],
        start: int,
        stop: int,
    ) -> None:
        for j, column in enumerate(columns):
            v = np.subtract(column[start:stop], self.center[j])
            v *= 1.0 / self.scale[j]
            np.clip(v, -CLIP, CLIP, out=v)
            missing = np.isnan(v)
            if missing.any():
                v[missing] = 0.0
            out[:, j] = v

    def sums(self, columns: Sequence[NDArray[np.float64]]) -> JointSums:
        """The :class:`JointSums` of the columns' bounded values, block by block (the
        blocks stay in cache; the whole ``(n, k)`` matrix is never built)."""
        k = len(self.names)
        n = len(columns[0]) if columns else 0
        s1 = np.zeros(k)
        s2 = np.zeros((k, k))
        block = np.empty((min(n, _BLOCK), k))
        for start in range(0, n, _BLOCK):
            stop = min(n, start + _BLOCK)
            view = block[: stop - start]
            self._fill(view, columns, start, stop)
            s1 += view.sum(axis=0)
            s2 += view.T @ view
        return JointSums(n, s1, s2.ravel())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return {
            "names": list(self.names),
            "center": list(self.center),
            "scale": list(self.scale),
            "corr": list(self.corr),
            "variance": list(self.variance),
            "n_rows": self.n_rows,
            "dof": list(self.dof),
        }

    @classmethod
    def fit(cls, names: Sequence[str], columns: Sequence[NDArray[np.float64]]) -> JointReference:
        """Fit on reference columns (constant columns must be left out by the caller)."""
        center, scale = [], []
        rng = np.random.default_rng(0)
        for column in columns:
            finite = column[np.isfinite(column)]
            if finite.size > EDGE_SAMPLE:
                finite = finite[rng.integers(0, finite.size, EDGE_SAMPLE)]
            q1, median, q3 = (float(q) for q in np.quantile(finite, [0.25, 0.5, 0.75]))
            spread = (q3 - q1) / 1.349
            if not spread > 0:
                spread = float(np.std(finite))
            center.append(median)
            scale.append(spread)
        pairs = _n_pairs(len(names))
        joint = cls(names, center, scale, [0.0] * pairs, [1.0] * pairs, 0)
        sums = joint.sums(columns)
        n = sums.n
        sample = list(columns)
        if n > JOINT_SAMPLE:
            index = np.sort(np.random.default_rng(0).choice(n, JOINT_SAMPLE, replace=False))
            sample = [column[index] for column in columns]
        variance, dof = _correlation_variance(joint.transform(sample))
        corr = np.nan_to_num(sums.correlations())
        return cls(names, center, scale, corr, variance, n, dof)


def _n_pairs(k: int) -> int:
    return k * (k - 1) // 2


DOF_SAMPLE = 16_384
"""Most rows whose eighth moments estimate the precision (``dof``) of the variances."""


def _correlation_variance(
    values: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Asymptotic variance of ``sqrt(n)(r_ij - rho_ij)`` for every pair (delta method), and
    the degrees of freedom of each estimate (see :func:`_variance_dof`)."""
    k = values.shape[1]
    rows, cols = _pairs(k)
    if not rows.size:
        return np.zeros(0), np.zeros(0)
    centered = values - values.mean(axis=0)
    sd = centered.std(axis=0)
    sd[sd == 0] = 1.0
    z = centered / sd
    n = z.shape[0]
    z2 = z * z
    m22 = (z2.T @ z2) / n
    m31 = ((z2 * z).T @ z) / n  # m31[i, j] = E[z_i^3 z_j]
    m40 = np.diag(m22)
    rho = (z.T @ z) / n
    r = rho[rows, cols]
    variance = (
        m22[rows, cols]
        + r * r / 4 * (m40[rows] + m40[cols] + 2 * m22[rows, cols])
        - r * (m31[rows, cols] + m31[cols, rows])
    )
    dof = _variance_dof(z[:DOF_SAMPLE], r, rows, cols, n)
    return np.asarray(np.maximum(variance, 1e-12), dtype=np.float64), dof


def _variance_dof(
    z: NDArray[np.float64],
    r: NDArray[np.float64],
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    n: int,
) -> NDArray[np.float64]:
    """Degrees of freedom ``2 / CV²`` of each pair's variance estimate from ``n`` rows.

    The estimate is the mean over rows of ``φ = a b + r²/4 (a² + b² + 2 a b) - r (a + b) z_i
    z_j`` (``a = z_i²``, ``b = z_j²``), so its squared coefficient of variation is
    ``Var(φ) / (n E[φ]²)``, estimated here on the standardised rows ``z`` (a prefix of the
    sample is enough: only its order of magnitude matters). Heavy tails and few rows give
    few degrees of freedom: a noisy variance, hence a heavier tail of the change it
    standardises.
    """
    first = np.zeros(rows.size)
    second = np.zeros(rows.size)
    for start in range(0, z.shape[0], 4096):
        block = z[start : start + 4096]
        zi, zj = block[:, rows], block[:, cols]
        a, b = zi * zi, zj * zj
        phi = a * b + r * r / 4 * (a * a + b * b + 2 * a * b) - r * (a + b) * zi * zj
        first += phi.sum(axis=0)
        second += (phi * phi).sum(axis=0)
    size = max(z.shape[0], 1)
    mean = first / size
    spread = np.maximum(second / size - mean * mean, 0.0)
    cv2 = spread / (n * np.maximum(mean * mean, 1e-24))
    return np.asarray(2 / np.maximum(cv2, 1e-9), dtype=np.float64)


@attrs.frozen
class JointSums:
    """Mergeable sums of the bounded values of a window: ``n``, ``Σv`` and ``Σ v vᵀ``."""

    n: int = attrs.field(converter=operator.index)
    s1: tuple[float, ...] = attrs.field(converter=_floats)
    s2: tuple[float, ...] = attrs.field(converter=_floats)  # k*k, row-major

    @classmethod
    def of(cls, values: NDArray[np.float64]) -> JointSums:
        """The sums of an ``(n, k)`` array of bounded values."""
        return cls(values.shape[0], values.sum(axis=0), (values.T @ values).ravel())

    def merge(self, other: JointSums) -> JointSums:
        """Sums of both windows' rows."""
        if len(self.s1) != len(other.s1):
            raise DataError("cannot merge joint sums of different features")
        return JointSums(
            self.n + other.n,
            np.add(self.s1, other.s1),
            np.add(self.s2, other.s2),
        )

    def correlations(self) -> NDArray[np.float64]:
        """Correlation of every pair ``i < j`` (NaN where a feature is constant)."""
        k = len(self.s1)
        rows, cols = _pairs(k)
        if self.n < 2 or not rows.size:
            return np.full(rows.size, np.nan)
        mean = np.asarray(self.s1) / self.n
        cov = np.asarray(self.s2).reshape(k, k) / self.n - np.outer(mean, mean)
        sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov[rows, cols] / (sd[rows] * sd[cols])
        corr[(sd[rows] < 1e-12) | (sd[cols] < 1e-12)] = np.nan
        return np.asarray(np.clip(corr, -1.0, 1.0), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return {"n": self.n, "s1": list(self.s1), "s2": list(self.s2)}


# -- hash buckets of high-cardinality categoricals ------------------------------------------


def _bucket_of(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % BUCKETS


def bucket_counts(column: Any) -> tuple[int, ...]:
    """Counts of a categorical column's non-missing values in :data:`BUCKETS` hash buckets.

    The bucket of a value depends on its text only, never on data, so testing bucket counts
    is free of the bias that choosing tracked levels by their reference counts brings.
    """
    _, uniques, counts = _level_counts(column)
    return _buckets(uniques, counts)


def _buckets(uniques: NDArray[Any], counts: NDArray[np.int64]) -> tuple[int, ...]:
    if not uniques.size:
        return (0,) * BUCKETS
    buckets = np.fromiter(map(_bucket_of, uniques.tolist()), dtype=np.intp, count=uniques.size)
    return tuple(int(c) for c in np.bincount(buckets, weights=counts, minlength=BUCKETS))


def _bucket_map(value: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {str(k): tuple(int(c) for c in v) for k, v in value.items()}


# -- the reference --------------------------------------------------------------------------


def _numeric_column(feature: NumericProfile, column: Any) -> NDArray[np.float64]:
    if is_categorical_dtype(getattr(column, "dtype", np.dtype("O"))):
        return _object_numbers(feature.name, column)
    return np.ascontiguousarray(_numeric_values(column))


def _joint_features(profile: Profile) -> list[str]:
    """Numeric features with at least two distinct finite reference values."""
    return [
        f.name
        for f in profile.inputs
        if isinstance(f, NumericProfile)
        and f.min is not None
        and f.max is not None
        and f.max > f.min
        and f.n_finite >= 2
    ]


@attrs.frozen
class Reference:
    """What live data is compared with: input and output profiles, and joint correlations.

    Fit one with :meth:`fit` (from the reference data, ideally the training data, and the
    model's outputs on it) or :meth:`from_profile` (from an artifact's profile: no dependence
    check then, and output drift when the profile holds the model's outputs). ``buckets``
    holds the hash-bucket counts (:func:`bucket_counts`) of categorical features with more
    levels than the profile tracks. Each feature takes at most about 4 KiB
    (:meth:`size_per_feature`).
    """

    inputs: Profile
    outputs: Profile | None = None
    joint: JointReference | None = None
    buckets: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict, converter=_bucket_map)

    @property
    def n_rows(self) -> int:
        """Number of reference rows."""
        return self.inputs.n_rows

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Input feature names, in column order."""
        return self.inputs.feature_names

    @classmethod
    def fit(
        cls,
        X: Any,
        outputs: Any = None,
        *,
        feature_names: Sequence[str] | None = None,
        bins: int | None = None,
        max_levels: int | None = None,
    ) -> Reference:
        """Fit a reference from data (a 2-D array, list of rows or DataFrame).

        ``outputs`` are the model's predictions on the same rows (1-D, or 2-D such as
        ``predict_proba``), for output drift. ``bins`` (default 20 quantile bins) and
        ``max_levels`` (default 50 tracked levels) are :meth:`Profile.from_data`'s.
        """
        inputs = Profile.from_data(X, feature_names=feature_names, bins=bins, max_levels=max_levels)
        output_profile = None
        if outputs is not None:
            output_profile = outputs_profile(
                outputs, inputs.n_rows, bins=bins, max_levels=max_levels
            )
        _, columns = _named_columns(X, feature_names, inputs)
        by_name = dict(columns)
        buckets = {
            f.name: bucket_counts(by_name[f.name])
            for f in inputs.features
            if isinstance(f, CategoricalProfile) and f.other > 0
        }
        joint_names = _joint_features(inputs)
        joint = None
        if len(joint_names) >= 2:
            values = [
                _numeric_column(inputs[name], by_name[name])  # type: ignore[arg-type]
                for name in joint_names
            ]
            joint = JointReference.fit(joint_names, values)
        return cls(inputs=inputs, outputs=output_profile, joint=joint, buckets=buckets)

    @classmethod
    def from_profile(cls, profile: Profile) -> Reference:
        """A reference from an existing profile (an artifact's): no joint part.

        The profile's :attr:`~modelkit.Profile.outputs` (the model's outputs on its training
        data, which ``modelkit.train`` stores) are the reference of output drift; a profile
        without them gives none. Target columns (``__target__``) are dropped: labels are not
        predictions, so they cannot be the reference of output drift.
        """
        inputs = Profile(features=profile.inputs, n_rows=profile.n_rows)
        return cls(inputs=inputs, outputs=profile.outputs)

    def size_per_feature(self) -> int:
        """Largest JSON size in bytes one input feature takes (its profile and joint share)."""
        joint = 0
        if self.joint is not None:
            joint = len(json.dumps(self.joint.to_dict())) // max(len(self.joint.names), 1)
        sizes = [len(json.dumps(f.to_dict())) for f in self.inputs.features]
        return max(sizes, default=0) + joint

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict; :meth:`from_dict` reads it back."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "inputs": self.inputs.to_dict(),
            "outputs": None if self.outputs is None else self.outputs.to_dict(),
            "joint": None if self.joint is None else self.joint.to_dict(),
            "buckets": {k: list(v) for k, v in self.buckets.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Rebuild a reference written by :meth:`to_dict`."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise DataError(f"not a monitoring reference: expected a dict with format {FORMAT!r}")
        if data.get("version") != FORMAT_VERSION:
            raise DataError(
                f"unsupported reference version {data.get('version')!r}; this modelkit reads "
                f"version {FORMAT_VERSION}, upgrade modelkit to read newer references"
            )
        try:
            outputs = data.get("outputs")
            joint = data.get("joint")
            return cls(
                inputs=Profile.from_dict(data["inputs"]),
                outputs=None if outputs is None else Profile.from_dict(outputs),
                joint=None if joint is None else JointReference(**joint),
                buckets=data.get("buckets", {}),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(f"malformed reference dict: {exc!r}") from exc

    def summarize(
        self, X: Any, outputs: Any = None, *, at: datetime | None = None
    ) -> WindowSummary:
        """Summarize a batch of live data against this reference (see :class:`WindowSummary`).

        ``outputs`` are ignored when the reference has none. Raises
        :class:`~modelkit.exceptions.SignatureError` when the columns differ from the
        reference's.
        """
        n_rows, columns = _named_columns(X, None, self.inputs)
        names = [name for name, _ in columns]
        expected = list(self.feature_names)
        if sorted(names) != sorted(expected) or len(names) != len(expected):
            missing = [n for n in expected if n not in names]
            extra = [n for n in names if n not in expected]
            raise SignatureError(
                f"features differ from the monitoring reference (missing: {missing}, "
                f"unexpected: {extra}); give the same columns the model was trained on"
            )
        by_name = dict(columns)
        features: list[FeatureProfile] = []
        untracked: dict[str, dict[str, int]] = {}
        buckets: dict[str, tuple[int, ...]] = {}
        numeric: dict[str, NDArray[np.float64]] = {}
        for feature in self.inputs.features:
            column = by_name[feature.name]
            if isinstance(feature, CategoricalProfile):
                n_missing, uniques, counts = _level_counts(_hashed(column))
                features.append(
                    _categorical_against(feature.name, feature.levels, n_missing, uniques, counts)
                )
                if feature.other == 0:  # every reference level tracked: these are new
                    found = _untracked(feature, uniques, counts)
                    if found:
                        untracked[feature.name] = found
                if feature.name in self.buckets:
                    buckets[feature.name] = _buckets(uniques, counts)
            else:
                values = _numeric_column(feature, column)
                numeric[feature.name] = values
                features.append(_numeric_against(feature, values))
        inputs = Profile(features=features, n_rows=n_rows)
        output_profile = None
        if self.outputs is not None and outputs is not None:
            output_profile = outputs_profile(outputs, n_rows, edges_from=self.outputs)
        joint = None
        if self.joint is not None:
            joint = self.joint.sums([numeric[name] for name in self.joint.names])
        return WindowSummary(
            inputs=inputs,
            outputs=output_profile,
            joint=joint,
            untracked=untracked,
            buckets=buckets,
            start=at,
            end=at,
        )

    def empty(self) -> WindowSummary:
        """The summary of no rows (the identity of :meth:`WindowSummary.merge`)."""
        features: list[FeatureProfile] = []
        for f in self.inputs.features:
            if isinstance(f, CategoricalProfile):
                features.append(CategoricalProfile(f.name, f.levels, [0] * len(f.levels), 0, 0))
            else:
                features.append(_empty_numeric(f))
        outputs = None
        if self.outputs is not None:
            outputs = Profile(
                features=[
                    CategoricalProfile(f.name, f.levels, [0] * len(f.levels), 0, 0)
                    if isinstance(f, CategoricalProfile)
                    else _empty_numeric(f)
                    for f in self.outputs.features
                ],
                n_rows=0,
            )
        joint = None
        if self.joint is not None:
            k = len(self.joint.names)
            joint = JointSums(0, [0.0] * k, [0.0] * (k * k))
        return WindowSummary(
            inputs=Profile(features=features, n_rows=0),
            outputs=outputs,
            joint=joint,
            buckets=dict.fromkeys(self.buckets, (0,) * BUCKETS),
        )


SMALL_BATCH = 50_000
"""Below this many rows, bins are found by binary search (one pass), above it by one
comparison pass per edge (faster on long columns)."""


def _numeric_against(feature: NumericProfile, values: NDArray[np.float64]) -> NumericProfile:
    """``Profile.from_data(..., edges_from=reference)`` for one numeric column, with less
    fixed cost per call for the small batches a served model sees."""
    if values.size >= SMALL_BATCH or not feature.edges:
        return _feature_against(feature, values)  # type: ignore[return-value]
    finite_mask = np.isfinite(values)
    finite = values[finite_mask]
    present = values[~np.isnan(values)]
    mean, m2 = 0.0, 0.0
    low: float | None = None
    high: float | None = None
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        mean, m2 = _moments(finite, max(-low, high))
    edges = np.asarray(feature.edges)
    index = np.searchsorted(edges, present, side="right")
    index[present == edges[-1]] = edges.size - 1  # the last inner bin is closed
    counts = np.bincount(index, minlength=edges.size + 1)
    return NumericProfile(
        name=feature.name,
        edges=feature.edges,
        counts=counts.tolist(),
        missing=values.size - present.size,
        n_infinite=present.size - finite.size,
        mean=mean,
        m2=m2,
        min=low,
        max=high,
    )


def _empty_numeric(f: NumericProfile) -> NumericProfile:
    return NumericProfile(
        name=f.name,
        edges=f.edges,
        counts=[0] * len(f.counts),
        missing=0,
        n_infinite=0,
        mean=0.0,
        m2=0.0,
        min=None,
        max=None,
    )


def _hashed(column: Any) -> Any:
    """A pandas column of Python objects as a ``category`` column: pandas' hash-based
    factorisation counts a million strings several times faster than sorting them."""
    if is_pandas(column) and getattr(column.dtype, "kind", "") in "OT":
        return column.astype("category")
    return column


def _untracked(
    feature: CategoricalProfile, uniques: NDArray[Any], counts: NDArray[np.int64]
) -> dict[str, int]:
    """Counts of the (most frequent) values that are not among the tracked levels."""
    tracked = set(feature.levels)
    found = [
        (int(c), str(u))
        for u, c in zip(uniques.tolist(), counts.tolist(), strict=True)
        if str(u) not in tracked
    ]
    return _top(found)


def _top(pairs: list[tuple[int, str]]) -> dict[str, int]:
    pairs.sort(key=lambda pair: (-pair[0], pair[1]))
    return {name: count for count, name in pairs[:MAX_UNTRACKED]}


def _untracked_map(value: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    return {str(k): {str(a): int(b) for a, b in v.items()} for k, v in value.items()}


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


@attrs.frozen
class WindowSummary:
    """Summary of a batch or window of live data against a :class:`Reference`.

    ``inputs`` (and ``outputs``) are profiles on the reference's bins and levels; ``joint``
    the sums the dependence check needs; ``untracked`` the counts of categorical values the
    reference never saw, for features whose reference tracks every level it saw (the 16
    most frequent per feature: merging is exact up to 16 new levels);
    ``buckets`` hash-bucket counts of the categorical features the reference has
    :attr:`Reference.buckets` of; ``start`` and ``end`` the times of the first and last
    batch, when known. Constant size per feature;
    :meth:`merge` is exact, associative and commutative.
    """

    inputs: Profile
    outputs: Profile | None = None
    joint: JointSums | None = None
    untracked: Mapping[str, Mapping[str, int]] = attrs.field(factory=dict, converter=_untracked_map)
    buckets: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict, converter=_bucket_map)
    start: datetime | None = None
    end: datetime | None = None

    @property
    def n_rows(self) -> int:
        """Number of rows summarized."""
        return self.inputs.n_rows

    def merge(self, other: WindowSummary) -> WindowSummary:
        """The summary of both windows' rows."""
        outputs = self.outputs
        if self.outputs is not None and other.outputs is not None:
            outputs = self.outputs.merge(other.outputs)
        elif other.outputs is not None:
            outputs = other.outputs
        joint = self.joint
        if self.joint is not None and other.joint is not None:
            joint = self.joint.merge(other.joint)
        elif other.joint is not None:
            joint = other.joint
        untracked = {}
        for name in sorted(set(self.untracked) | set(other.untracked)):
            counts = dict(self.untracked.get(name, {}))
            for value, count in other.untracked.get(name, {}).items():
                counts[value] = counts.get(value, 0) + count
            untracked[name] = _top([(c, v) for v, c in counts.items()])
        buckets = dict(self.buckets)
        for name, theirs in other.buckets.items():
            mine = buckets.get(name)
            buckets[name] = theirs if mine is None else tuple(np.add(mine, theirs).tolist())
        return WindowSummary(
            inputs=self.inputs.merge(other.inputs),
            outputs=outputs,
            joint=joint,
            untracked=untracked,
            buckets=buckets,
            start=_earliest(self.start, other.start),
            end=_latest(self.end, other.end),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (times as ISO 8601)."""
        return {
            "inputs": self.inputs.to_dict(),
            "outputs": None if self.outputs is None else self.outputs.to_dict(),
            "joint": None if self.joint is None else self.joint.to_dict(),
            "untracked": {k: dict(v) for k, v in self.untracked.items()},
            "buckets": {k: list(v) for k, v in self.buckets.items()},
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
        }

    def size_per_feature(self) -> int:
        """Largest JSON size in bytes one input feature takes in this summary."""
        joint = 0
        if self.joint is not None and self.joint.s1:
            joint = len(json.dumps(self.joint.to_dict())) // len(self.joint.s1)
        sizes = [
            len(json.dumps(f.to_dict())) + len(json.dumps(self.untracked.get(f.name, {})))
            for f in self.inputs.features
        ]
        return max(sizes, default=0) + joint
