"""Datasets: data together with its full-content fingerprint and its reference profile.

``Dataset(X, y)`` wraps an ndarray, a list of rows or a pandas DataFrame (pandas is only
imported when the data is a pandas object). ``dataset.fingerprint`` is a sha256 over the
dtype, shape, column names and every value (see :func:`fingerprint`); ``dataset.profile()``
is the :class:`Profile` drift monitoring compares live data with.

Example::

    ds = Dataset(X_train, y_train, name="churn-2024-06")
    ds.fingerprint          # 'sha256:5f1c...'
    ref = ds.profile()      # Profile: quantile histograms, moments, level counts
    live = Profile.from_data(X_live, edges_from=ref)   # same edges: comparable, mergeable
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from modelkit._fingerprint import as_array, fingerprint, is_pandas
from modelkit._profile import (
    TARGET,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    Profile,
    default_feature_names,
    table_shape,
)
from modelkit.exceptions import DataError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CategoricalProfile",
    "Dataset",
    "FeatureProfile",
    "NumericProfile",
    "Profile",
    "fingerprint",
]


def _as_features(value: Any) -> Any:
    """Keep ndarrays and DataFrames as they are; turn lists of rows into ndarrays."""
    return value if is_pandas(value) else as_array(value, "X")


def _as_targets(value: Any) -> Any:
    if value is None or is_pandas(value):
        return value
    array = as_array(value, "y")
    if array.ndim not in (1, 2):
        raise DataError(f"y must be 1-D or 2-D, got shape {array.shape}")
    return array


def _as_names(names: Sequence[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError("feature_names must be a sequence of names, not one string")
    return tuple(str(name) for name in names)


@attrs.frozen(eq=False, repr=False)
class Dataset:
    """Features ``X`` (and optionally targets ``y``) with their fingerprint and profile.

    Args:
        X: a 2-D ndarray, a list of rows (converted with ``numpy.asarray``) or a pandas
            DataFrame. The data is not copied: do not modify it in place once the
            fingerprint has been read, since it is computed once and cached.
        y: optional targets with one entry per row (1-D or 2-D array, list, Series).
        name: an optional label, e.g. where the data came from.
        feature_names: column names of an array ``X`` (default ``f0``, ``f1``, ...); for a
            DataFrame they must equal its columns.

    Raises:
        DataError: ``X`` is not 2-D, ``y`` has another number of rows, or the names do not
            fit the columns (wrong count, duplicates, reserved ``__target__`` prefix).
    """

    X: Any = attrs.field(converter=_as_features)
    y: Any = attrs.field(default=None, converter=_as_targets)
    name: str | None = attrs.field(default=None, kw_only=True)
    _given_names: tuple[str, ...] | None = attrs.field(
        default=None, kw_only=True, alias="feature_names", converter=_as_names
    )
    _names: tuple[str, ...] = attrs.field(init=False)
    _n_rows: int = attrs.field(init=False)
    _fingerprint: str | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        n_rows, frame_names, n_columns = table_shape(self.X)
        names = self._given_names
        if names is None:
            names = frame_names or default_feature_names(n_columns)
        elif frame_names is not None and names != frame_names:
            raise DataError(
                f"feature_names {list(names)} differ from the DataFrame's columns "
                f"{list(frame_names)}; rename the columns instead"
            )
        if len(names) != n_columns:
            raise DataError(f"got {len(names)} feature_names for {n_columns} columns of X")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise DataError(f"feature names must be distinct, repeated: {duplicated}")
        if any(n.startswith(TARGET) for n in names):
            raise DataError(f"feature names starting with {TARGET!r} are reserved for targets")
        if self.y is not None and len(self.y) != n_rows:
            raise DataError(f"y has {len(self.y)} rows but X has {n_rows}; give one per row")
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_n_rows", n_rows)

    @property
    def fingerprint(self) -> str:
        """``"sha256:<hex>"`` over the whole content of ``X`` and ``y`` (computed once)."""
        if self._fingerprint is None:
            names = None if is_pandas(self.X) else self._given_names
            value = fingerprint(self.X, self.y, feature_names=names)
            object.__setattr__(self, "_fingerprint", value)
            return value
        return self._fingerprint

    @property
    def n_rows(self) -> int:
        """Number of rows (samples)."""
        return self._n_rows

    @property
    def n_features(self) -> int:
        """Number of feature columns of ``X``."""
        return len(self._names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column names: the DataFrame's, the ones given, or ``f0``, ``f1``, ..."""
        return self._names

    def profile(self, **options: Any) -> Profile:
        """Profile ``X`` and ``y``: see :meth:`Profile.from_data` for the options.

        ``edges_from=reference`` profiles this data against a reference's bins and levels
        (an array without ``feature_names`` then takes the reference's names).
        """
        return Profile.from_data(self.X, self.y, feature_names=self._given_names, **options)

    def __repr__(self) -> str:
        """Short description (never the data itself)."""
        target = "none" if self.y is None else type(self.y).__name__
        return (
            f"Dataset(name={self.name!r}, n_rows={self.n_rows}, n_features={self.n_features}, "
            f"X={type(self.X).__name__}, y={target})"
        )
