"""Reference and window summaries: fitting, constant size, exact merging, round trips."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.monitoring.helpers import Make, mixed

from modelkit._profile import CategoricalProfile, NumericProfile, Profile
from modelkit.exceptions import DataError, SignatureError
from modelkit.monitoring import DriftConfig, check_drift
from modelkit.monitoring.summary import (
    BUCKETS,
    MAX_UNTRACKED,
    JointReference,
    JointSums,
    Reference,
    WindowSummary,
    bucket_counts,
)

REFERENCE = Reference.fit(mixed(3000, 0), outputs=np.arange(3000) % 3)


def test_fit_profiles_every_kind_and_the_joint_part(make: Make) -> None:
    reference = Reference.fit(make(2000, 1))
    assert reference.n_rows == 2000
    assert reference.feature_names == ("a", "b", "x", "skewed", "count", "color", "city")
    assert isinstance(reference.inputs["a"], NumericProfile)
    assert isinstance(reference.inputs["color"], CategoricalProfile)
    assert reference.joint is not None
    assert reference.joint.names == ("a", "b", "x", "skewed", "count")
    # the correlated pair is pair 0 (a, b): about 0.8 on the bounded scale
    assert reference.joint.corr[0] == pytest.approx(0.8, abs=0.05)
    assert set(reference.buckets) == {"city"}  # more levels than tracked: hash buckets
    assert sum(reference.buckets["city"]) == reference.inputs["city"].count
    assert reference.outputs is None


def test_reference_of_a_profile_drops_targets_and_has_no_joint_part(make: Make) -> None:
    frame = make(500, 2)
    profile = Profile.from_data(frame, y=np.zeros(500))
    reference = Reference.from_profile(profile)
    assert reference.feature_names == tuple(frame.columns)
    assert reference.joint is None
    assert reference.outputs is None


def test_reference_round_trips_through_json() -> None:
    data = json.loads(json.dumps(REFERENCE.to_dict()))
    again = Reference.from_dict(data)
    assert again == REFERENCE


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": "other"}, "not a monitoring reference"),
        ({"format": "modelkit.reference", "version": 99}, "unsupported reference version"),
        ({"format": "modelkit.reference", "version": 1}, "malformed"),
    ],
)
def test_bad_reference_dicts_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        Reference.from_dict(data)


def test_reference_stays_within_4_kib_per_feature() -> None:
    assert REFERENCE.size_per_feature() <= 4096


def test_window_size_is_flat_in_the_stream_length() -> None:
    small = REFERENCE.summarize(mixed(1000, 3), np.arange(1000) % 3)
    big = REFERENCE.summarize(mixed(50_000, 4), np.arange(50_000) % 3)
    assert big.n_rows == 50_000
    assert big.size_per_feature() <= 64 * 1024
    assert big.size_per_feature() <= small.size_per_feature() * 1.2


def test_summarize_refuses_other_columns() -> None:
    with pytest.raises(SignatureError, match="missing: \\['city'\\]"):
        REFERENCE.summarize(mixed(100, 5).drop(columns="city"))


def test_outputs_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(DataError, match="one output per input row"):
        REFERENCE.summarize(mixed(100, 5), np.zeros(99))
    with pytest.raises(DataError, match="same rows"):
        Reference.fit(mixed(100, 5), np.zeros(99))
    with pytest.raises(DataError, match="1-D or 2-D"):
        Reference.fit(mixed(10, 5), np.zeros((10, 1, 1)))


def test_two_dimensional_outputs_get_one_column_each() -> None:
    reference = Reference.fit(mixed(200, 6), np.random.default_rng(0).random((200, 2)))
    assert reference.outputs is not None
    assert reference.outputs.feature_names == ("prediction[0]", "prediction[1]")
    frame = pd.DataFrame({"p": np.arange(200.0)})
    assert Reference.fit(mixed(200, 6), frame).outputs is not None
    assert Reference.fit(mixed(200, 6), frame["p"]).outputs is not None


def _same(one: WindowSummary, other: WindowSummary) -> None:
    assert one.inputs.n_rows == other.inputs.n_rows
    for mine, theirs in zip(one.inputs.features, other.inputs.features, strict=True):
        assert mine.counts == theirs.counts
        assert mine.missing == theirs.missing
    assert one.outputs is not None
    assert other.outputs is not None
    assert [f.counts for f in one.outputs.features] == [f.counts for f in other.outputs.features]
    assert one.untracked == other.untracked
    assert one.buckets == other.buckets
    assert one.joint is not None
    assert other.joint is not None
    assert one.joint.n == other.joint.n
    np.testing.assert_allclose(one.joint.s2, other.joint.s2, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 600), max_size=4))
def test_merging_shards_gives_the_summary_of_all_rows(cuts: list[int]) -> None:
    frame = mixed(600, 7, new_level=0.05)
    outputs = np.arange(600) % 3
    whole = REFERENCE.summarize(frame, outputs)
    bounds = [0, *sorted(cuts), 600]
    merged = REFERENCE.empty()
    for start, stop in itertools.pairwise(bounds):
        merged = merged.merge(REFERENCE.summarize(frame.iloc[start:stop], outputs[start:stop]))
    _same(merged, whole)


@settings(max_examples=15, deadline=None)
@given(seeds=st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)))
def test_merge_is_associative_and_commutative(seeds: tuple[int, int, int]) -> None:
    a, b, c = (REFERENCE.summarize(mixed(80, s), np.arange(80) % 3) for s in seeds)
    _same(a.merge(b).merge(c), a.merge(b.merge(c)))
    _same(a.merge(b), b.merge(a))


def test_untracked_values_are_counted_and_capped() -> None:
    frame = mixed(400, 8, new_level=0.1)
    summary = REFERENCE.summarize(frame)
    assert summary.untracked["color"]["new"] == int((frame["color"] == "new").sum())
    assert "city" not in summary.untracked  # truncated reference: hash buckets instead
    wide = frame.copy()
    wide["color"] = [f"v{i}" for i in range(400)]
    capped = REFERENCE.summarize(wide).untracked["color"]
    assert len(capped) == MAX_UNTRACKED
    assert list(capped)[:2] == ["v0", "v1"]  # ties: by name


def test_bucket_counts_depend_on_the_text_only() -> None:
    values = pd.Series(["a", "b", "a", None, "c"], dtype=object)
    counts = bucket_counts(values)
    assert len(counts) == BUCKETS
    assert sum(counts) == 4
    assert bucket_counts(values.astype("category")) == counts
    assert bucket_counts(pd.Series([None, None], dtype=object)) == (0,) * BUCKETS


def test_window_to_dict_is_json() -> None:
    summary = REFERENCE.summarize(mixed(50, 9), np.arange(50) % 3)
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["inputs"]["n_rows"] == 50
    assert data["joint"]["n"] == 50


def test_joint_sums_and_reference_check_their_shapes() -> None:
    with pytest.raises(DataError, match="different features"):
        JointSums(1, [0.0], [0.0]).merge(JointSums(1, [0.0, 0.0], [0.0] * 4))
    with pytest.raises(DataError, match="needs 2 centers"):
        JointReference(["a", "b"], [0.0], [1.0, 1.0], [0.0], [1.0], 10)
    with pytest.raises(DataError, match="positive"):
        JointReference(["a", "b"], [0.0, 0.0], [1.0, 0.0], [0.0], [1.0], 10)
    assert np.isnan(JointSums(1, [0.0, 0.0], [0.0] * 4).correlations()).all()


def test_constant_columns_stay_out_of_the_joint_part() -> None:
    frame = pd.DataFrame({"a": np.arange(100.0), "b": np.ones(100), "c": np.arange(100.0) % 7})
    reference = Reference.fit(frame)
    assert reference.joint is not None
    assert reference.joint.names == ("a", "c")
    assert Reference.fit(frame[["a", "b"]]).joint is None


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([0.0, 1.0, -1.0, 2.5]),
        ),
        max_size=60,
    ),
    reference=st.lists(st.floats(-3, 3), min_size=2, max_size=40),
)
def test_the_small_batch_path_matches_the_profile(
    values: list[float], reference: list[float]
) -> None:
    from modelkit._profile import _feature_against
    from modelkit.monitoring.summary import _numeric_against

    feature = Profile.from_data(np.asarray(reference).reshape(-1, 1), bins=5).features[0]
    assert isinstance(feature, NumericProfile)
    column = np.asarray(values, dtype=np.float64)
    for edge in feature.edges:  # values exactly on the edges, the last one included
        column = np.append(column, edge)
    assert _numeric_against(feature, column) == _feature_against(feature, column)


# -- the model's outputs in a profile (the artifact's reference of output drift) -------------


def test_a_profile_with_outputs_is_a_reference_of_output_drift(make: Make) -> None:
    frame = make(2000, 30)
    profile = Profile.from_data(frame, outputs=(frame["x"] > 0).astype(int))
    assert profile.outputs is not None
    assert profile.outputs.feature_names == ("prediction",)
    assert profile.outputs.n_rows == 2000
    reference = Reference.from_profile(profile)
    assert reference.outputs == profile.outputs
    live = make(2000, 31, shift=1.0)
    window = reference.summarize(live, (live["x"] > 0).astype(int))
    report = check_drift(reference, window, DriftConfig(mode="significance"))
    output = next(f for f in report.features if f.role == "output")
    assert (output.name, output.status) == ("prediction", "drift")


def test_outputs_round_trip_and_older_profiles_have_none(make: Make) -> None:
    frame = make(500, 32)
    probabilities = np.column_stack([np.linspace(0, 1, 500), np.linspace(1, 0, 500)])
    profile = Profile.from_data(frame, outputs=probabilities)
    assert profile.outputs is not None
    assert profile.outputs.feature_names == ("prediction[0]", "prediction[1]")
    data = json.loads(json.dumps(profile.to_dict()))
    assert Profile.from_dict(data) == profile
    del data["outputs"]  # as written before outputs existed
    older = Profile.from_dict(data)
    assert older.outputs is None
    assert Reference.from_profile(older).outputs is None
    assert "outputs" not in Profile.from_data(frame).to_dict()  # unchanged without outputs


def test_profiles_with_outputs_merge_and_profile_against_each_other(make: Make) -> None:
    frame = make(1000, 33)
    outputs = np.arange(1000) % 3
    whole = Profile.from_data(frame, outputs=outputs)
    first = Profile.from_data(frame.iloc[:400], outputs=outputs[:400], edges_from=whole)
    second = Profile.from_data(frame.iloc[400:], outputs=outputs[400:], edges_from=whole)
    merged = first.merge(second)
    assert merged.outputs is not None
    assert whole.outputs is not None
    assert merged.outputs.features == whole.outputs.features
    with pytest.raises(DataError, match="with outputs and one without"):
        first.merge(Profile.from_data(frame.iloc[400:], edges_from=whole))
    with pytest.raises(DataError, match="no outputs profile"):
        Profile.from_data(frame, outputs=outputs, edges_from=Profile.from_data(frame))


def test_outputs_of_other_rows_are_refused(make: Make) -> None:
    frame = make(100, 34)
    with pytest.raises(DataError, match="outputs have 99 rows but X has 100"):
        Profile.from_data(frame, outputs=np.zeros(99))
    short = Profile.from_data(frame.iloc[:50])
    with pytest.raises(DataError, match="same 100 rows"):
        Profile(features=Profile.from_data(frame).features, n_rows=100, outputs=short)


def test_the_joint_reference_keeps_the_precision_of_its_variances(make: Make) -> None:
    joint = Reference.fit(make(800, 35)).joint
    assert joint is not None
    assert len(joint.dof) == len(joint.corr)
    assert all(d > 0 for d in joint.dof)
    data = json.loads(json.dumps(joint.to_dict()))
    assert JointReference(**data) == joint
    del data["dof"]  # written before the precision was kept: exact variances assumed
    assert JointReference(**data).dof == ()
    with pytest.raises(DataError, match="none or 1 dof"):
        JointReference(["a", "b"], [0.0, 0.0], [1.0, 1.0], [0.0], [1.0], 10, [1.0, 2.0])
