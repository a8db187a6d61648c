"""Profiles: small, mergeable, JSON-serialisable summaries of tabular data.

A :class:`Profile` is the reference drift monitoring compares live data with. It holds one
:class:`NumericProfile` or :class:`CategoricalProfile` per feature (and per target column),
decided by dtype alone: a column is categorical iff its numpy kind is not one of ``b i u f``
(object, string, pandas ``category``, datetimes); booleans are numeric.

Merging is exact because the bins are fixed by the reference: a profile built with
``edges_from=reference`` uses the reference's bin edges and tracked levels, so profiles of
shards of the same data merge into the profile of the whole.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import numpy as np
from numpy.dtypes import StringDType

from modelkit._fingerprint import as_array, is_pandas
from modelkit.exceptions import DataError, SignatureError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_MAX_LEVELS",
    "MAX_LEVEL_CHARS",
    "OUTPUT",
    "TARGET",
    "CategoricalProfile",
    "FeatureProfile",
    "NumericProfile",
    "Profile",
    "default_feature_names",
    "is_categorical_dtype",
    "output_table",
    "outputs_profile",
    "table_shape",
]

TARGET = "__target__"
"""Feature name of a 1-D target in a profile (``__target__[j]`` for column j of a 2-D one)."""
OUTPUT = "prediction"
"""Name of a 1-D model output column in :attr:`Profile.outputs` (``prediction[j]`` for column
j of 2-D outputs such as ``predict_proba``)."""
DEFAULT_BINS = 20
MAX_BINS = 50
DEFAULT_MAX_LEVELS = 50
MAX_LEVELS = 200
MAX_LEVEL_CHARS = 64
"""Longer categorical values are never tracked as levels: they count as ``other``."""
EDGE_SAMPLE = 1 << 16
"""Most values whose quantiles place the inner bin edges of a new numeric feature."""
LEVELS_JSON_BUDGET = 2048
"""Bytes of JSON the tracked level names of one feature may take (keeps a feature ≤ 4 KiB)."""
FORMAT = "modelkit.profile"
FORMAT_VERSION = 1
_FLOAT_MAX = float(np.finfo(np.float64).max)
_NUMBER_TYPES = (bool, int, float, np.bool_, np.integer, np.floating)


def is_categorical_dtype(dtype: Any) -> bool:
    """Whether a column of this numpy or pandas dtype is categorical (kind not in ``biuf``)."""
    return getattr(dtype, "kind", "O") not in "biuf"


def default_feature_names(n: int) -> tuple[str, ...]:
    """Names of the columns of an array without names: ``f0``, ``f1``, ... (as ``Signature``)."""
    return tuple(f"f{j}" for j in range(n))


def table_shape(table: Any, role: str = "X") -> tuple[int, tuple[str, ...] | None, int]:
    """``(n_rows, column names or None, n_columns)`` of a 2-D table (DataFrame or array)."""
    if is_pandas(table):
        if type(table).__name__ != "DataFrame":
            raise DataError(f"{role} must be 2-D; use series.to_frame() for one feature")
        return len(table), tuple(str(c) for c in table.columns), table.shape[1]
    array = as_array(table, role)
    if array.ndim != 2:
        raise DataError(
            f"{role} must be 2-D (rows, features), got shape {array.shape}; "
            "use array.reshape(-1, 1) for a single feature"
        )
    return array.shape[0], None, array.shape[1]


# -- feature profiles -------------------------------------------------------------------------


def _float_tuple(values: Iterable[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _int_tuple(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(operator.index(v) for v in values)  # refuses 1.5 rather than rounding it


def _str_tuple(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(values)


def _feature_tuple(values: Iterable[FeatureProfile]) -> tuple[FeatureProfile, ...]:
    return tuple(values)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _check_same_name(name: str, other: str) -> None:
    if name != other:
        raise DataError(f"cannot merge profiles of different features {name!r} and {other!r}")


def _check_counts(name: str, field: str, counts: Iterable[int]) -> None:
    if any(c < 0 for c in counts):
        raise DataError(f"feature {name!r}: {field} must be non-negative, got {counts}")


@attrs.frozen
class NumericProfile:
    """Summary of one numeric feature: a histogram on fixed edges plus mergeable moments.

    Bins, for edges ``e[0] < ... < e[k]``: ``counts[0]`` counts values below ``e[0]``
    (underflow), ``counts[i]`` values in ``[e[i-1], e[i])`` for ``1 <= i < k``, ``counts[k]``
    values in ``[e[k-1], e[k]]`` (the last bin is closed) and ``counts[k+1]`` values above
    ``e[k]`` (overflow). ``-inf`` and ``+inf`` fall in the under- and overflow bins; NaN is
    missing. Moments (``mean``, ``m2`` = sum of squared deviations, ``min``, ``max``) cover
    the finite values; ``min``/``max`` are ``None`` when there are none. ``m2`` is infinite
    (``"inf"`` in :meth:`to_dict`) only when the variance exceeds the float range.
    """

    kind: ClassVar[str] = "numeric"

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    edges: tuple[float, ...] = attrs.field(converter=_float_tuple)
    counts: tuple[int, ...] = attrs.field(converter=_int_tuple)
    missing: int = attrs.field(converter=operator.index)
    n_infinite: int = attrs.field(converter=operator.index)
    mean: float = attrs.field(converter=float)
    m2: float = attrs.field(converter=float)
    min: float | None = attrs.field(converter=_optional_float)
    max: float | None = attrs.field(converter=_optional_float)

    def __attrs_post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=np.float64)
        if len(edges) == 1 or not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
            raise DataError(
                f"feature {self.name!r}: edges must be finite, strictly increasing and "
                f"none or at least two, got {list(self.edges)}"
            )
        if len(self.counts) != len(self.edges) + 1:
            raise DataError(
                f"feature {self.name!r}: expected {len(self.edges) + 1} counts "
                f"(one per bin plus under- and overflow), got {len(self.counts)}"
            )
        _check_counts(self.name, "counts", self.counts)
        _check_counts(self.name, "missing", [self.missing])
        if not 0 <= self.n_infinite <= self.count:
            raise DataError(
                f"feature {self.name!r}: n_infinite must be between 0 and count "
                f"({self.count}), got {self.n_infinite}"
            )
        has_finite = self.n_finite > 0
        if (self.min is None or self.max is None) == has_finite:
            raise DataError(
                f"feature {self.name!r}: min/max must be given exactly when there are finite "
                f"values ({self.n_finite} here)"
            )
        if not math.isfinite(self.mean) or not self.m2 >= 0:
            raise DataError(
                f"feature {self.name!r}: mean must be finite and m2 >= 0, "
                f"got mean={self.mean}, m2={self.m2}"
            )

    @property
    def count(self) -> int:
        """Number of non-missing values (finite and infinite)."""
        return sum(self.counts)

    @property
    def n_finite(self) -> int:
        """Number of finite values, the ones the moments describe."""
        return self.count - self.n_infinite

    @property
    def var(self) -> float:
        """Population variance of the finite values (NaN when there are none)."""
        return self.m2 / self.n_finite if self.n_finite else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation of the finite values (NaN when there are none)."""
        return math.sqrt(self.var)

    @property
    def missing_rate(self) -> float:
        """Fraction of rows where the value is missing (0.0 for no rows)."""
        total = self.count + self.missing
        return self.missing / total if total else 0.0

    def merge(self, other: NumericProfile) -> NumericProfile:
        """Profile of the union of both profiles' data; the edges must be identical."""
        _check_same_name(self.name, other.name)
        if self.edges != other.edges:
            raise DataError(
                f"cannot merge profiles of feature {self.name!r} with different bin edges; "
                "profile every shard with Profile.from_data(..., edges_from=reference)"
            )
        na, nb = self.n_finite, other.n_finite
        if nb == 0:
            mean, m2 = self.mean, self.m2
        elif na == 0:
            mean, m2 = other.mean, other.m2
        else:
            n = na + nb
            mean = self.mean * (na / n) + other.mean * (nb / n)  # cannot overflow
            delta = other.mean - self.mean
            m2 = self.m2 + other.m2 + delta * delta * (na * nb / n)
        mins = [v for v in (self.min, other.min) if v is not None]
        maxs = [v for v in (self.max, other.max) if v is not None]
        return NumericProfile(
            name=self.name,
            edges=self.edges,
            counts=[a + b for a, b in zip(self.counts, other.counts, strict=True)],
            missing=self.missing + other.missing,
            n_infinite=self.n_infinite + other.n_infinite,
            mean=mean,
            m2=m2,
            min=min(mins) if mins else None,
            max=max(maxs) if maxs else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict; :meth:`Profile.from_dict` reads it back exactly."""
        return {
            "name": self.name,
            "kind": self.kind,
            "edges": list(self.edges),
            "counts": list(self.counts),
            "missing": self.missing,
            "n_infinite": self.n_infinite,
            "mean": self.mean,
            "m2": self.m2 if math.isfinite(self.m2) else "inf",
            "min": self.min,
            "max": self.max,
        }


@attrs.frozen
class CategoricalProfile:
    """Summary of one categorical feature: exact counts of tracked levels, plus ``other``.

    Values are compared as text (``str(value)``). The tracked ``levels`` are fixed by the
    reference: the most frequent values (at most ``max_levels``, ties broken by the text,
    each at most 64 characters, within a 2 KiB JSON budget), in decreasing order of their
    reference count. ``other`` counts every non-missing value that is not a tracked level,
    in the reference and in any data profiled against it, so merging stays exact.
    Missing values are ``None``, NaN, ``pd.NA`` and ``NaT``.
    """

    kind: ClassVar[str] = "categorical"

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    levels: tuple[str, ...] = attrs.field(converter=_str_tuple)
    counts: tuple[int, ...] = attrs.field(converter=_int_tuple)
    other: int = attrs.field(converter=operator.index)
    missing: int = attrs.field(converter=operator.index)

    def __attrs_post_init__(self) -> None:
        if not all(isinstance(level, str) for level in self.levels):
            raise DataError(f"feature {self.name!r}: levels must be strings")
        if len(set(self.levels)) != len(self.levels):
            raise DataError(f"feature {self.name!r}: levels must be distinct")
        if len(self.counts) != len(self.levels):
            raise DataError(
                f"feature {self.name!r}: expected one count per level ({len(self.levels)}), "
                f"got {len(self.counts)}"
            )
        _check_counts(self.name, "counts", self.counts)
        _check_counts(self.name, "other/missing", [self.other, self.missing])

    @property
    def count(self) -> int:
        """Number of non-missing values."""
        return sum(self.counts) + self.other

    @property
    def missing_rate(self) -> float:
        """Fraction of rows where the value is missing (0.0 for no rows)."""
        total = self.count + self.missing
        return self.missing / total if total else 0.0

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        """Profile of the union of both profiles' data; the levels must be identical."""
        _check_same_name(self.name, other.name)
        if self.levels != other.levels:
            raise DataError(
                f"cannot merge profiles of feature {self.name!r} with different levels; "
                "profile every shard with Profile.from_data(..., edges_from=reference)"
            )
        return CategoricalProfile(
            name=self.name,
            levels=self.levels,
            counts=[a + b for a, b in zip(self.counts, other.counts, strict=True)],
            other=self.other + other.other,
            missing=self.missing + other.missing,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict; :meth:`Profile.from_dict` reads it back exactly."""
        return {
            "name": self.name,
            "kind": self.kind,
            "levels": list(self.levels),
            "counts": list(self.counts),
            "other": self.other,
            "missing": self.missing,
        }


FeatureProfile = NumericProfile | CategoricalProfile
_FEATURE_CLASSES: dict[str, type[NumericProfile] | type[CategoricalProfile]] = {
    "numeric": NumericProfile,
    "categorical": CategoricalProfile,
}


# -- the profile ------------------------------------------------------------------------------


@attrs.frozen
class Profile:
    """Reference summary of a dataset: one feature profile per column (and target column).

    Build one with :meth:`from_data` (or ``Dataset.profile()``); profile later data against
    it with ``Profile.from_data(batch, edges_from=reference)`` so histograms share edges and
    levels; combine shard profiles with :meth:`merge`; store it with :meth:`to_dict`. Each
    feature takes at most about 4 KiB of JSON, whatever the number of rows.

    ``outputs``, when given, profiles a model's outputs on the same rows (columns
    :data:`OUTPUT` or ``prediction[j]``): the reference of output drift, stored with the
    artifact. A profile without it (as every profile written before it existed) simply has
    no output reference.
    """

    features: tuple[FeatureProfile, ...] = attrs.field(converter=_feature_tuple)
    n_rows: int = attrs.field(converter=operator.index)
    outputs: Profile | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise DataError(f"feature names must be distinct, got {names}")
        if self.outputs is not None and (
            self.outputs.n_rows != self.n_rows or self.outputs.outputs is not None
        ):
            raise DataError(
                f"the outputs profile must describe the same {self.n_rows} rows (it has "
                f"{self.outputs.n_rows}) and hold no outputs of its own"
            )
        for feature in self.features:
            if feature.count + feature.missing != self.n_rows:
                raise DataError(
                    f"feature {feature.name!r} counts {feature.count} values and "
                    f"{feature.missing} missing, expected {self.n_rows} rows in all"
                )

    @classmethod
    def from_data(
        cls,
        X: Any,
        y: Any = None,
        *,
        feature_names: Sequence[str] | None = None,
        edges_from: Profile | None = None,
        bins: int | None = None,
        max_levels: int | None = None,
        outputs: Any = None,
    ) -> Profile:
        """Profile ``X`` (a 2-D array, list of rows or DataFrame) and optionally ``y``.

        Args:
            X: the features; columns are named by the DataFrame, by ``feature_names``, by
                ``edges_from`` (in order) or else ``f0``, ``f1``, ...
            y: targets or predictions, profiled as feature ``__target__`` (1-D) or
                ``__target__[j]`` (2-D).
            edges_from: a reference profile: reuse its bin edges and levels (``bins`` and
                ``max_levels`` must then be left out), so the result merges with profiles
                built the same way. Its features must match the data's.
            bins: number of quantile bins of new numeric features (1-50, default 20); ties
                merge bins, and a feature with at most ``bins`` distinct values gets one bin
                per value.
            max_levels: most levels tracked per new categorical feature (1-200, default 50).
            outputs: a model's outputs on the rows of ``X`` (1-D, or 2-D such as
                ``predict_proba``), profiled as :attr:`outputs` (with ``edges_from``, on
                its outputs' bins and levels).

        Raises:
            SignatureError: the data's features or kinds differ from ``edges_from``.
            DataError: bad shapes, names or options.
        """
        if edges_from is not None and (bins is not None or max_levels is not None):
            raise DataError("bins and max_levels come from edges_from; leave them out")
        bins = DEFAULT_BINS if bins is None else bins
        max_levels = DEFAULT_MAX_LEVELS if max_levels is None else max_levels
        if not 1 <= bins <= MAX_BINS or not 1 <= max_levels <= MAX_LEVELS:
            raise DataError(
                f"bins must be in 1..{MAX_BINS} and max_levels in 1..{MAX_LEVELS}, "
                f"got bins={bins}, max_levels={max_levels}"
            )
        n_rows, columns = _named_columns(X, feature_names, edges_from)
        if y is not None:
            n_targets, target_columns = _target_columns(y)
            if n_targets != n_rows:
                raise DataError(f"y has {n_targets} rows but X has {n_rows}")
            columns.extend(target_columns)
        names = [name for name, _ in columns]
        if len(set(names)) != len(names):
            raise DataError(f"feature names must be distinct, got {names}")
        if edges_from is None:
            features = [_new_feature(n, col, bins, max_levels) for n, col in columns]
        else:
            _check_same_features(names, edges_from.feature_names, SignatureError)
            refs = {f.name: f for f in edges_from.features}
            features = [_feature_against(refs[n], col) for n, col in columns]
        output_profile = None
        if outputs is not None and edges_from is None:
            output_profile = outputs_profile(outputs, n_rows, bins=bins, max_levels=max_levels)
        elif outputs is not None and edges_from is not None:
            if edges_from.outputs is None:
                raise DataError(
                    "edges_from has no outputs profile to profile these outputs against; leave "
                    "outputs out or give a reference profiled with its outputs"
                )
            output_profile = outputs_profile(outputs, n_rows, edges_from=edges_from.outputs)
        return cls(features=features, n_rows=n_rows, outputs=output_profile)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of all profiled columns, inputs then targets."""
        return tuple(f.name for f in self.features)

    @property
    def inputs(self) -> tuple[FeatureProfile, ...]:
        """Profiles of the input features (everything but the target columns)."""
        return tuple(f for f in self.features if not f.name.startswith(TARGET))

    @property
    def targets(self) -> tuple[FeatureProfile, ...]:
        """Profiles of the target (or prediction) columns, if ``y`` was given."""
        return tuple(f for f in self.features if f.name.startswith(TARGET))

    def __getitem__(self, name: str) -> FeatureProfile:
        """The profile of feature ``name``."""
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"no feature {name!r} in profile; features: {list(self.feature_names)}")

    def __iter__(self) -> Iterator[FeatureProfile]:
        """Iterate over the feature profiles in column order."""
        return iter(self.features)

    def __len__(self) -> int:
        """Number of profiled columns."""
        return len(self.features)

    def merge(self, other: Profile) -> Profile:
        """Profile of both profiles' rows: counts add exactly, moments combine (Chan et al.).

        Both must profile the same features with the same edges and levels, i.e. come from
        the same reference through ``edges_from`` (or be that reference).

        Raises:
            DataError: the features, kinds, edges or levels differ.
        """
        _check_same_features(other.feature_names, self.feature_names, ValueError)
        if (self.outputs is None) != (other.outputs is None):
            raise DataError(
                "cannot merge a profile with outputs and one without; profile every shard "
                "with its outputs, or none"
            )
        theirs = {f.name: f for f in other.features}
        merged: list[FeatureProfile] = []
        for mine in self.features:
            their = theirs[mine.name]
            merged.append(_merge_features(mine, their))
        outputs = None
        if self.outputs is not None and other.outputs is not None:
            outputs = self.outputs.merge(other.outputs)
        return Profile(features=merged, n_rows=self.n_rows + other.n_rows, outputs=outputs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (``json.dumps`` works as is); read back with :meth:`from_dict`."""
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n_rows": self.n_rows,
            "features": [f.to_dict() for f in self.features],
        }
        if self.outputs is not None:  # absent otherwise: older readers ignore it either way
            data["outputs"] = self.outputs.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Rebuild a profile written by :meth:`to_dict` (exactly equal to the original).

        Raises:
            DataError: not a profile, an unsupported version, or inconsistent content.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise DataError(f"not a profile: expected a dict with format {FORMAT!r}")
        if data.get("version") != FORMAT_VERSION:
            raise DataError(
                f"unsupported profile version {data.get('version')!r}; this modelkit reads "
                f"version {FORMAT_VERSION}, upgrade modelkit to read newer profiles"
            )
        try:
            features: list[FeatureProfile] = []
            for entry in data["features"]:
                fields = dict(entry)
                feature_class = _FEATURE_CLASSES[fields.pop("kind")]
                features.append(feature_class(**fields))
            outputs = data.get("outputs")
            return cls(
                features=features,
                n_rows=data["n_rows"],
                outputs=None if outputs is None else cls.from_dict(outputs),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(f"malformed profile dict: {exc!r}") from exc


def outputs_profile(
    outputs: Any,
    n_rows: int,
    *,
    edges_from: Profile | None = None,
    bins: int | None = None,
    max_levels: int | None = None,
) -> Profile:
    """The profile of a model's ``outputs`` on ``n_rows`` rows (columns of
    :func:`output_table`): new bins and levels, or those of ``edges_from`` (a reference's
    outputs profile, :attr:`Profile.outputs`)."""
    table, names = output_table(outputs)
    profile = Profile.from_data(
        table, feature_names=names, edges_from=edges_from, bins=bins, max_levels=max_levels
    )
    if profile.n_rows != n_rows:
        raise DataError(
            f"outputs have {profile.n_rows} rows but X has {n_rows}; give one output per "
            "input row (the model's outputs on the same rows)"
        )
    return profile


def _merge_features(mine: FeatureProfile, theirs: FeatureProfile) -> FeatureProfile:
    if isinstance(mine, NumericProfile) and isinstance(theirs, NumericProfile):
        return mine.merge(theirs)
    if isinstance(mine, CategoricalProfile) and isinstance(theirs, CategoricalProfile):
        return mine.merge(theirs)
    raise DataError(
        f"cannot merge feature {mine.name!r}: it is {mine.kind} in one profile "
        f"and {theirs.kind} in the other"
    )


def _check_same_features(
    names: Sequence[str], expected: Sequence[str], error: type[ValueError]
) -> None:
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    if missing or extra:
        raise error(
            f"features differ from the reference profile (missing: {missing}, "
            f"unexpected: {extra}); profile the same columns as the reference"
        )


# -- columns ----------------------------------------------------------------------------------


def _named_columns(
    table: Any, feature_names: Sequence[str] | None, reference: Profile | None
) -> tuple[int, list[tuple[str, Any]]]:
    """``n_rows`` and ``(name, 1-D column)`` pairs of a 2-D table."""
    n_rows, frame_names, n_columns = table_shape(table)
    if feature_names is not None:
        names = tuple(str(n) for n in feature_names)
        if frame_names is not None and names != frame_names:
            raise DataError(
                f"feature_names {list(names)} differ from the DataFrame's columns "
                f"{list(frame_names)}; rename the columns instead"
            )
    elif frame_names is not None:
        names = frame_names
    elif reference is not None:
        names = tuple(f.name for f in reference.inputs)
    else:
        names = default_feature_names(n_columns)
    if len(names) != n_columns:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise SignatureError(f"expected {len(names)} features ({shown}), got {n_columns} columns")
    if any(name.startswith(TARGET) for name in names):
        raise DataError(f"feature names starting with {TARGET!r} are reserved for targets")
    if frame_names is not None:
        return n_rows, [(names[j], table.iloc[:, j]) for j in range(n_columns)]
    array = as_array(table, "X")
    return n_rows, [(names[j], array[:, j]) for j in range(n_columns)]


def output_table(outputs: Any) -> tuple[Any, tuple[str, ...]]:
    """Model outputs (1-D or 2-D, array, list or pandas) as a 2-D table and its column names
    (:data:`OUTPUT`, or ``prediction[j]`` for each column of 2-D outputs)."""
    if is_pandas(outputs) and type(outputs).__name__ == "Series":
        return outputs.to_frame(name=OUTPUT), (OUTPUT,)
    if is_pandas(outputs):
        columns = tuple(f"{OUTPUT}[{j}]" for j in range(outputs.shape[1]))
        frame = outputs.copy()
        frame.columns = list(columns)
        return frame, columns
    array = as_array(outputs, "outputs")
    if array.ndim == 1:
        return array.reshape(-1, 1), (OUTPUT,)
    if array.ndim == 2:
        return array, tuple(f"{OUTPUT}[{j}]" for j in range(array.shape[1]))
    raise DataError(f"outputs must be 1-D or 2-D, got shape {array.shape}")


def _target_columns(y: Any) -> tuple[int, list[tuple[str, Any]]]:
    if is_pandas(y) and type(y).__name__ == "Series":
        return len(y), [(TARGET, y)]
    if is_pandas(y) and type(y).__name__ == "DataFrame":
        return len(y), [(f"{TARGET}[{j}]", y.iloc[:, j]) for j in range(y.shape[1])]
    array = as_array(y, "y")
    if array.ndim == 1:
        return len(array), [(TARGET, array)]
    if array.ndim == 2:
        return len(array), [(f"{TARGET}[{j}]", array[:, j]) for j in range(array.shape[1])]
    raise DataError(f"y must be 1-D or 2-D, got shape {array.shape}")


def _numeric_values(column: Any) -> NDArray[np.float64]:
    if is_pandas(column):
        return np.asarray(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(column, dtype=np.float64)


def _new_feature(name: str, column: Any, bins: int, max_levels: int) -> FeatureProfile:
    if is_categorical_dtype(column.dtype):
        missing, uniques, counts = _level_counts(column)
        levels = _select_levels(uniques, counts, max_levels)
        return _categorical_against(name, levels, missing, uniques, counts)
    return _numeric_feature(name, column, None, bins)


def _feature_against(reference: FeatureProfile, column: Any) -> FeatureProfile:
    if isinstance(reference, CategoricalProfile):
        missing, uniques, counts = _level_counts(column)
        return _categorical_against(reference.name, reference.levels, missing, uniques, counts)
    if is_categorical_dtype(column.dtype):
        column = _object_numbers(reference.name, column)
    return _numeric_feature(reference.name, column, reference.edges, 0)


def _object_numbers(name: str, column: Any) -> NDArray[np.float64]:
    """Numbers held as Python objects (e.g. rows of mixed lists) as floats, missing as NaN."""
    values = np.asarray(column)
    if is_pandas(column) and not isinstance(column.dtype, np.dtype):
        values = np.asarray(column.to_numpy(dtype=object))
    if values.dtype.kind not in "OT":
        raise SignatureError(
            f"feature {name!r} is numeric in the reference profile but the data has dtype "
            f"{column.dtype}; convert the column to a numeric dtype"
        )
    values = values.astype(object)
    missing = _missing_mask(values)
    present = values[~missing]
    bad = [t for t in set(map(type, present)) if not issubclass(t, _NUMBER_TYPES)]
    if bad:
        raise SignatureError(
            f"feature {name!r} is numeric in the reference profile but the data holds "
            f"values of type {sorted(t.__name__ for t in bad)}; convert them to numbers"
        )
    numbers = np.full(values.shape, np.nan)
    numbers[~missing] = np.asarray(present.tolist(), dtype=np.float64)
    return numbers


# -- numeric machinery ------------------------------------------------------------------------


def _numeric_feature(
    name: str, column: Any, edges: tuple[float, ...] | None, bins: int
) -> NumericProfile:
    """Profile of one numeric column, on ``edges`` or on new quantile edges."""
    values = np.ascontiguousarray(_numeric_values(column))
    finite_mask = np.isfinite(values)
    all_finite = bool(finite_mask.all())
    finite = values if all_finite else values[finite_mask]
    present = values if all_finite else values[~np.isnan(values)]
    mean, m2 = 0.0, 0.0
    low: float | None = None
    high: float | None = None
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        mean, m2 = _moments(finite, max(-low, high))
    if edges is None:
        edges = _quantile_edges(finite, low, high, bins)
    return NumericProfile(
        name=name,
        edges=edges,
        counts=_bin_counts(present, edges),
        missing=values.size - present.size,
        n_infinite=present.size - finite.size,
        mean=mean,
        m2=m2,
        min=low,
        max=high,
    )


def _moments(finite: NDArray[np.float64], magnitude: float) -> tuple[float, float]:
    """Mean and sum of squared deviations, two-pass; scaled by a power of two (exactly)
    when the values are so large that sums would overflow (``m2`` may then be inf)."""
    if magnitude < 1e150:
        mean = float(finite.mean())
        return mean, float(np.square(finite - mean).sum())
    scale = math.ldexp(1.0, math.frexp(magnitude)[1] - 1)  # values scale to below 2
    scaled = finite / scale
    mean = float(scaled.mean())
    with np.errstate(over="ignore"):
        return mean * scale, float(np.square(scaled - mean).sum()) * scale * scale


def _quantile_edges(
    finite: NDArray[np.float64], low: float | None, high: float | None, bins: int
) -> tuple[float, ...]:
    """Strictly increasing edges at quantiles of the finite values, from ``low`` to ``high``.

    Inner edges are the quantiles of at most :data:`EDGE_SAMPLE` values (a fixed-seed
    sample when there are more); a column with at most ``bins`` distinct (sampled) values
    gets one bin per value.
    """
    if low is None or high is None:
        return ()
    sample = finite
    if finite.size > EDGE_SAMPLE:
        index = np.random.default_rng(0).integers(0, finite.size, EDGE_SAMPLE)
        sample = finite[np.sort(index)]
    ordered = np.sort(sample)
    distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    if sample is not finite:
        distinct = np.unique(np.concatenate((distinct, [low, high])))
    if distinct.size <= bins:  # few distinct values: one bin for each
        if high < _FLOAT_MAX:
            return _edge_tuple(np.append(distinct, np.nextafter(high, np.inf)))
        if distinct.size == 1:
            return _edge_tuple(np.array([np.nextafter(high, -np.inf), high]))
        return _edge_tuple(distinct)
    position = np.linspace(0.0, 1.0, bins + 1) * (ordered.size - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, ordered.size - 1)
    quantiles = ordered[below] + (ordered[above] - ordered[below]) * (position - below)
    quantiles[0], quantiles[-1] = low, high
    return _edge_tuple(np.unique(quantiles))


def _edge_tuple(edges: NDArray[np.float64]) -> tuple[float, ...]:
    return tuple((edges + 0.0).tolist())  # + 0.0 turns -0.0 into 0.0


def _bin_counts(values: NDArray[np.float64], edges: tuple[float, ...]) -> list[int]:
    """Counts per bin (underflow, inner bins, overflow) of non-NaN ``values``.

    One vectorised comparison per edge (at most 51) beats a binary search per value.
    """
    if not edges:
        return [values.size]
    below = [np.count_nonzero(values < edge) for edge in edges[:-1]]
    below.append(np.count_nonzero(values <= edges[-1]))  # the last inner bin is closed
    return [int(c) for c in np.diff(below, prepend=0, append=values.size)]


# -- categorical machinery --------------------------------------------------------------------


def _level_counts(column: Any) -> tuple[int, NDArray[Any], NDArray[np.int64]]:
    """``(missing, sorted distinct values as text, their counts)`` of one column."""
    if is_pandas(column) and type(column.dtype).__name__ == "CategoricalDtype":
        codes = np.asarray(column.cat.codes.to_numpy(), dtype=np.int64)
        present = codes[codes >= 0]
        per_category = np.bincount(present, minlength=len(column.dtype.categories))
        names = _as_text(np.asarray(column.dtype.categories.to_numpy(), dtype=object))
        uniques, inverse = np.unique(names, return_inverse=True)
        counts = np.zeros(len(uniques), dtype=np.int64)
        np.add.at(counts, inverse, per_category)
        seen = counts > 0
        return codes.size - present.size, uniques[seen], counts[seen]
    values = np.asarray(column)  # numpy-backed pandas columns too: same text as numpy's
    if is_pandas(column) and not isinstance(column.dtype, np.dtype):
        values = np.asarray(column.to_numpy(dtype=object))
    if values.dtype.kind in "mM":
        missing_mask = np.isnat(values)
    elif values.dtype.kind in "fc":
        missing_mask = np.isnan(values)
    elif values.dtype.kind in "OT":
        values = values.astype(object)
        missing_mask = _missing_mask(values)
    else:
        missing_mask = np.zeros(values.shape, dtype=bool)
    present = values[~missing_mask]
    uniques, counts = np.unique(_as_text(present), return_counts=True)
    return int(missing_mask.sum()), uniques, counts.astype(np.int64)


def _as_text(values: NDArray[Any]) -> NDArray[Any]:
    """``str(value)`` of every value, as a numpy variable-width string array."""
    if values.dtype.kind == "O" and set(map(type, values)) - {str}:
        return np.array(list(map(str, values)), dtype=StringDType())
    return values.astype(StringDType())  # same text as str() for str, numbers and dates


def _missing_mask(values: NDArray[Any]) -> NDArray[np.bool_]:
    """True where an object array holds None, NaN, ``pd.NA`` or ``NaT``."""
    types = list(map(type, values))
    kinds = {value_type: _missing_kind(value_type) for value_type in set(types)}
    # a dict lookup per value, not ``types == t``: numpy defers that comparison for
    # classes such as pandas' NAType and returns a bare False
    codes = np.fromiter(map(kinds.__getitem__, types), dtype=np.int8, count=len(types))
    mask = np.equal(codes, _ALWAYS_MISSING)
    for code, test in ((_FLOAT_VALUE, np.isnan), (_DATETIME_VALUE, np.isnat)):
        selected = np.flatnonzero(codes == code)
        if selected.size:
            mask[selected] = np.fromiter(map(test, values[selected]), dtype=bool)
    return mask


_NEVER_MISSING, _ALWAYS_MISSING, _FLOAT_VALUE, _DATETIME_VALUE = 0, 1, 2, 3


def _missing_kind(value_type: type) -> int:
    name, module = value_type.__name__, value_type.__module__
    if value_type is type(None) or (module.startswith("pandas") and name in ("NAType", "NaTType")):
        return _ALWAYS_MISSING
    if issubclass(value_type, (float, np.floating)):
        return _FLOAT_VALUE
    if issubclass(value_type, (np.datetime64, np.timedelta64)):
        return _DATETIME_VALUE
    return _NEVER_MISSING


def _select_levels(uniques: NDArray[Any], counts: NDArray[np.int64], limit: int) -> list[str]:
    """The tracked levels: most frequent first, ties by text, short ones, within budget."""
    order = np.argsort(-counts, kind="stable")  # uniques are sorted: ties stay by text
    short = np.strings.str_len(uniques) <= MAX_LEVEL_CHARS
    levels: list[str] = []
    budget = LEVELS_JSON_BUDGET
    for index in order[short[order]][:limit].tolist():
        level = str(uniques[index])
        size = len(json.dumps(level)) + 1
        if size > budget:
            break
        budget -= size
        levels.append(level)
    return levels


def _categorical_against(
    name: str,
    levels: Sequence[str],
    missing: int,
    uniques: NDArray[Any],
    counts: NDArray[np.int64],
) -> CategoricalProfile:
    level_counts = np.zeros(len(levels), dtype=np.int64)
    if levels and uniques.size:
        # ``uniques`` come sorted from np.unique, in code point order, which is also how
        # Python compares str: look the few levels up among them as Python strings. numpy's
        # StringDType cannot be trusted here: its searchsorted cannot compare long strings
        # held by two arrays, and np.unique over a concatenation of two such arrays has
        # crashed the interpreter (numpy 2.4).
        ordered = uniques.astype(object)
        reference = np.array(levels, dtype=object)
        at = np.minimum(np.searchsorted(ordered, reference), ordered.size - 1)
        hit = ordered[at] == reference
        level_counts[hit] = counts[at[hit]]  # uniques are distinct: one hit per level
    return CategoricalProfile(
        name=name,
        levels=levels,
        counts=level_counts.tolist(),
        other=int(counts.sum()) - int(level_counts.sum()),
        missing=missing,
    )
