"""Artifacts: what is written, what is verified before unpickling, and atomic replacement."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelkit import _atomic
from modelkit.artifact import (
    FORMAT_VERSION,
    INPUT_EXAMPLE_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    Artifact,
    FileEntry,
    Manifest,
    verify,
)
from modelkit.data import Dataset, Profile
from modelkit.exceptions import (
    ArtifactError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    HookFailedWarning,
    NotFoundError,
    VersionMismatchWarning,
)
from modelkit.hookspecs import hookimpl
from modelkit.model import Model
from modelkit.signature import Signature

if TYPE_CHECKING:
    from collections.abc import Callable

    import pluggy

# -- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def estimator(data: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    X, y = data
    return LogisticRegression(C=0.5).fit(X, y)


@pytest.fixture
def card(tmp_path: Path) -> Path:
    path = tmp_path / "inputs" / "card.md"
    path.parent.mkdir()
    path.write_text("# model card\n")
    return path


@pytest.fixture
def artifact(
    estimator: LogisticRegression, data: tuple[np.ndarray, np.ndarray], card: Path
) -> Artifact:
    X, _ = data
    return Artifact.from_model(
        estimator,
        name="churn",
        sample=X,
        metrics={"accuracy": 0.875, "auc": np.float64(0.9)},
        fingerprint="sha256:" + "ab" * 32,
        extra_files={"notes.txt": b"trained on Tuesday\n", "docs/card.md": card},
        tags={"team": "risk"},
    )


@pytest.fixture
def saved(artifact: Artifact, tmp_path: Path) -> Path:
    return artifact.save(tmp_path / "store" / "churn")


@pytest.fixture
def joblib_loads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every joblib.load call (the real one still runs)."""
    calls: list[Any] = []
    real = joblib.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(joblib, "load", spy)
    return calls


def rewrite_manifest(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    data = json.loads((path / MANIFEST_FILE).read_text())
    change(data)
    (path / MANIFEST_FILE).write_text(json.dumps(data))


def flip_byte(path: Path, offset: int, mask: int = 0xFF) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= mask
    path.write_bytes(bytes(raw))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- what is written ----------------------------------------------------------------------


def test_round_trip_predicts_the_same_and_keeps_metadata(
    saved: Path, estimator: LogisticRegression, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    loaded = Artifact.load(saved)

    np.testing.assert_array_equal(loaded.model.predict(X), estimator.predict(X))
    assert isinstance(loaded.model, Model)
    assert isinstance(loaded.model.signature, Signature)
    assert loaded.model.name == loaded.name == "churn"
    assert loaded.metrics == {"accuracy": 0.875, "auc": 0.9}
    assert loaded.tags == {"team": "risk"}
    assert loaded.fingerprint == "sha256:" + "ab" * 32
    assert loaded.params["C"] == 0.5
    assert loaded.path == saved
    assert loaded.extra_files == {
        "docs/card.md": saved / "docs" / "card.md",
        "notes.txt": saved / "notes.txt",
    }
    assert loaded.extra_files["notes.txt"].read_bytes() == b"trained on Tuesday\n"
    assert loaded.extra_files["docs/card.md"].read_text() == "# model card\n"


def test_signature_survives_the_round_trip(artifact: Artifact, saved: Path) -> None:
    loaded = Artifact.load(saved)
    assert loaded.model.signature is not None
    assert loaded.model.signature.to_dict() == artifact.model.signature.to_dict()


def test_manifest_records_every_file_with_its_hash_and_size(saved: Path) -> None:
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    on_disk = {
        p.relative_to(saved).as_posix(): p
        for p in saved.rglob("*")
        if p.is_file() and p.name != MANIFEST_FILE
    }
    assert (
        set(manifest["files"])
        == set(on_disk)
        == {
            MODEL_FILE,
            INPUT_EXAMPLE_FILE,
            "notes.txt",
            "docs/card.md",
        }
    )
    for name, path in on_disk.items():
        assert manifest["files"][name] == {"sha256": sha256_of(path), "size": path.stat().st_size}


def test_manifest_records_class_runtime_and_creation_time(
    artifact: Artifact, tmp_path: Path
) -> None:
    before = datetime.now(timezone.utc)
    path = artifact.save(tmp_path / "a")
    after = datetime.now(timezone.utc)
    manifest = json.loads((path / MANIFEST_FILE).read_text())

    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["name"] == "churn"
    assert manifest["model_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    created = datetime.fromisoformat(manifest["created_at"])
    assert created.utcoffset() is not None
    assert created.utcoffset().total_seconds() == 0
    assert before <= created <= after
    runtime = manifest["runtime"]
    assert set(runtime) == {"python", "numpy", "scipy", "scikit-learn", "joblib", "modelkit"}
    for dist in ("numpy", "scipy", "scikit-learn", "joblib"):
        assert runtime[dist] == version(dist)
    assert manifest["signature"] == artifact.model.signature.to_dict()
    assert manifest["metrics"] == {"accuracy": 0.875, "auc": 0.9}
    assert manifest["tags"] == {"team": "risk"}


def test_manifest_sha256_is_the_hash_of_the_stored_manifest(
    artifact: Artifact, saved: Path
) -> None:
    assert artifact.manifest_sha256 == sha256_of(saved / MANIFEST_FILE)
    loaded = Artifact.load(saved)
    assert loaded.manifest_sha256 == artifact.manifest_sha256
    assert loaded.manifest == artifact.manifest
    assert (saved / MANIFEST_FILE).read_bytes() == artifact.manifest.to_bytes()


def test_dataset_fingerprint_and_profile_round_trip(
    estimator: LogisticRegression, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, y = data
    dataset = Dataset(X, y, name="train")
    profile = dataset.profile()
    artifact = Artifact.from_model(
        estimator, name="m", sample=X, fingerprint=dataset.fingerprint, profile=profile
    )
    path = artifact.save(tmp_path / "m")
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert manifest["fingerprint"] == dataset.fingerprint
    assert manifest["profile"] == profile.to_dict()

    loaded = Artifact.load(path)
    assert loaded.fingerprint == dataset.fingerprint
    assert isinstance(loaded.profile, Profile)
    assert loaded.profile == profile


def test_a_manifest_without_signature_infers_one_from_the_estimator(
    saved: Path, estimator: LogisticRegression, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    rewrite_manifest(saved, lambda d: d.update(signature=None))
    loaded = Artifact.load(saved)
    assert isinstance(loaded.model.signature, Signature)
    np.testing.assert_array_equal(loaded.model.predict(X), estimator.predict(X))


def test_content_json_cannot_hold_is_refused_at_save(artifact: Artifact, tmp_path: Path) -> None:
    artifact.params = {"alpha": math.inf}
    with pytest.raises(ArtifactFormatError, match="plain JSON"):
        artifact.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == [tmp_path / "inputs"]


def test_repr_is_short_and_never_shows_the_data(saved: Path) -> None:
    loaded = Artifact.load(saved)
    text = repr(loaded)
    assert "churn" in text
    assert loaded.manifest_sha256[:12] in text
    assert str(saved) in text
    assert len(text) < 600
    assert "input_example" not in text


def test_manifest_is_unavailable_before_save(artifact: Artifact) -> None:
    with pytest.raises(ArtifactError, match="save"):
        _ = artifact.manifest
    with pytest.raises(ArtifactError, match="save"):
        _ = artifact.manifest_sha256
    assert artifact.path is None


def test_input_example_keeps_the_first_rows(
    saved: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    example = Artifact.load(saved).input_example
    assert example is not None
    assert example["columns"] is None
    np.testing.assert_array_equal(np.asarray(example["data"]), X[:5])


def test_input_example_from_a_dataframe_keeps_columns_and_nulls(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"age": [31.0, np.nan, 45.0], "income": [1.5, 2.5, 3.5]})
    est = LogisticRegression().fit(frame.fillna(0), [0, 1, 0])
    path = Artifact.from_model(est, name="df", sample=frame.fillna(0)).save(tmp_path / "a")
    example = json.loads((path / INPUT_EXAMPLE_FILE).read_text())
    assert example["columns"] == ["age", "income"]
    assert example["data"][0] == [31.0, 1.5]

    raw = Artifact.from_model(est, name="df", sample=frame).input_example
    assert raw is not None
    assert raw["data"][1] == [None, 2.5]


def test_without_a_sample_there_is_no_input_example(
    estimator: LogisticRegression, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, _ = data
    model = Model.wrap(estimator, sample=X, name="m")
    path = Artifact.from_model(model, name="m").save(tmp_path / "a")
    assert not (path / INPUT_EXAMPLE_FILE).exists()
    loaded = Artifact.load(path)
    assert loaded.input_example is None
    np.testing.assert_array_equal(loaded.model.predict(X), estimator.predict(X))


def test_from_model_keeps_a_given_model(
    estimator: LogisticRegression, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    model = Model.wrap(estimator, sample=X, name="given")
    artifact = Artifact.from_model(model, name="given", sample=X)
    assert artifact.model is model
    assert artifact.params["C"] == 0.5


def test_params_that_json_cannot_hold_are_kept_as_repr(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, y = data
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    weighted = LogisticRegression(class_weight={0: 1.0, 1: 2.0}, C=np.float64(2.0)).fit(X, y)

    pipe_params = Artifact.from_model(pipe, name="p", sample=X).params
    assert pipe_params["steps"] == [["scale", "StandardScaler()"], ["clf", "LogisticRegression()"]]
    weighted_params = Artifact.from_model(weighted, name="w", sample=X).params
    assert weighted_params["class_weight"] == repr({0: 1.0, 1: 2.0})
    assert weighted_params["C"] == 2.0
    assert type(weighted_params["C"]) is float

    path = Artifact.from_model(weighted, name="w", sample=X).save(tmp_path / "w")
    assert Artifact.load(path).params == weighted_params


def test_non_finite_metrics_are_stored_as_null_and_read_back_as_nan(
    estimator: LogisticRegression, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, _ = data
    artifact = Artifact.from_model(estimator, name="m", sample=X, metrics={"auc": math.nan})
    path = artifact.save(tmp_path / "m")
    assert json.loads((path / MANIFEST_FILE).read_text())["metrics"] == {"auc": None}
    assert math.isnan(Artifact.load(path).metrics["auc"])


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x",
        "/abs",
        "a/../b",
        "a/./b",
        ".hidden",
        "d/.hidden",
        "a\\b",
        "a//b",
        "dir/",
        MANIFEST_FILE,
        MODEL_FILE,
        INPUT_EXAMPLE_FILE,
    ],
)
def test_unsafe_or_reserved_extra_file_names_are_refused(
    estimator: LogisticRegression, name: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(name)) if name else "non-empty"):
        Artifact.from_model(estimator, name="m", extra_files={name: b"x"})


@pytest.mark.parametrize(
    "bad", [{"metrics": {"acc": "high"}}, {"tags": {"team": 3}}, {"extra_files": {"x.txt": 12}}]
)
def test_wrongly_typed_metadata_is_refused(
    estimator: LogisticRegression, bad: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        Artifact.from_model(estimator, name="m", **bad)


@pytest.mark.parametrize("name", ["", " padded ", "tab\there"])
def test_bad_artifact_names_are_refused(estimator: LogisticRegression, name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        Artifact.from_model(estimator, name=name)


# -- the manifest record ------------------------------------------------------------------

names = st.text(
    alphabet=st.characters(whitelist_categories=("L", "N"), max_codepoint=0x2FF),
    min_size=1,
    max_size=12,
)


@given(
    name=names,
    metrics=st.dictionaries(names, st.floats(allow_nan=False, allow_infinity=False)),
    tags=st.dictionaries(names, st.text(max_size=20)),
    files=st.dictionaries(
        st.lists(names, min_size=1, max_size=3).map("/".join),
        st.builds(
            FileEntry,
            sha256=st.binary(min_size=32, max_size=32).map(bytes.hex),
            size=st.integers(0, 2**40),
        ),
        max_size=4,
    ),
    params=st.dictionaries(names, st.none() | st.booleans() | st.integers() | st.text()),
)
def test_manifest_dict_and_bytes_round_trip(
    name: str,
    metrics: dict[str, float],
    tags: dict[str, str],
    files: dict[str, FileEntry],
    params: dict[str, Any],
) -> None:
    files = {**files, MODEL_FILE: FileEntry(sha256="0" * 64, size=1)}
    manifest = Manifest(
        name=name,
        created_at=datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        model_class="pkg.Estimator",
        params=params,
        metrics=metrics,
        tags=tags,
        runtime={"python": "3.11.7"},
        files=files,
    )
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert Manifest.from_dict(json.loads(manifest.to_bytes())) == manifest
    assert manifest.to_bytes() == Manifest.from_dict(manifest.to_dict()).to_bytes()


# -- verification before unpickling -------------------------------------------------------


@pytest.mark.parametrize("name", [MODEL_FILE, INPUT_EXAMPLE_FILE, "notes.txt", "docs/card.md"])
def test_a_changed_byte_is_refused_before_unpickling(
    saved: Path, joblib_loads: list[Any], name: str
) -> None:
    flip_byte(saved / name, offset=(saved / name).stat().st_size // 2)
    with pytest.raises(ArtifactIntegrityError, match=rf"{re.escape(name)} has sha256") as info:
        Artifact.load(saved)
    assert "nothing was unpickled" in str(info.value)
    assert joblib_loads == []
    with pytest.raises(ArtifactIntegrityError, match=name):
        verify(saved)


@pytest.mark.parametrize("name", [MODEL_FILE, "notes.txt"])
def test_a_truncated_file_is_refused(saved: Path, joblib_loads: list[Any], name: str) -> None:
    path = saved / name
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(ArtifactIntegrityError, match=rf"{name} is {size // 2} bytes .* {size}"):
        Artifact.load(saved)
    assert joblib_loads == []


@pytest.mark.parametrize("name", [MODEL_FILE, INPUT_EXAMPLE_FILE, "docs/card.md"])
def test_a_missing_file_is_refused(saved: Path, joblib_loads: list[Any], name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(ArtifactIntegrityError, match=f"{name} is missing"):
        Artifact.load(saved)
    assert joblib_loads == []


def test_an_unlisted_file_is_refused(saved: Path, joblib_loads: list[Any]) -> None:
    (saved / "docs" / "payload.py").write_text("print('hello')\n")
    with pytest.raises(ArtifactIntegrityError, match=r"payload\.py.*not listed"):
        Artifact.load(saved)
    assert joblib_loads == []


def test_a_symlink_in_place_of_a_file_is_refused(saved: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    shutil.move(saved / "notes.txt", elsewhere)
    (saved / "notes.txt").symlink_to(elsewhere)
    with pytest.raises(ArtifactIntegrityError, match=r"notes\.txt is not a regular file"):
        Artifact.load(saved)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    which=st.sampled_from([MODEL_FILE, INPUT_EXAMPLE_FILE, "notes.txt", "docs/card.md"]),
    offset=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_bit_pattern_anywhere_is_refused(
    saved: Path, tmp_path_factory: pytest.TempPathFactory, which: str, offset: int, mask: int
) -> None:
    copy = tmp_path_factory.mktemp("flip") / "a"
    shutil.copytree(saved, copy)
    flip_byte(copy / which, offset, mask)
    with pytest.raises(ArtifactIntegrityError, match=which):
        verify(copy)


def test_the_expected_manifest_hash_catches_a_swapped_artifact(
    artifact: Artifact, saved: Path, estimator: LogisticRegression, tmp_path: Path
) -> None:
    recorded = artifact.manifest_sha256
    other = Artifact.from_model(estimator, name="churn", metrics={"accuracy": 0.99})
    other_path = other.save(tmp_path / "other")
    shutil.rmtree(saved)
    shutil.copytree(other_path, saved)

    Artifact.load(saved)  # consistent in itself: only the recorded hash can tell
    with pytest.raises(ArtifactIntegrityError, match=f"manifest.json has sha256 .* {recorded}"):
        Artifact.load(saved, expected_manifest_sha256=recorded)
    with pytest.raises(ArtifactIntegrityError, match=r"manifest\.json"):
        verify(saved, expected_manifest_sha256=recorded)


def test_the_expected_manifest_hash_accepts_prefix_and_upper_case(
    artifact: Artifact, saved: Path
) -> None:
    digest = artifact.manifest_sha256
    for form in (digest, "sha256:" + digest, digest.upper()):
        assert Artifact.load(saved, expected_manifest_sha256=form).manifest_sha256 == digest


def test_a_malformed_expected_hash_is_a_value_error(saved: Path) -> None:
    with pytest.raises(ValueError, match="64 hex"):
        Artifact.load(saved, expected_manifest_sha256="abc")


def test_verify_checks_without_unpickling(
    artifact: Artifact, saved: Path, joblib_loads: list[Any]
) -> None:
    manifest = verify(saved, expected_manifest_sha256=artifact.manifest_sha256)
    assert manifest == artifact.manifest
    assert manifest.extra_files == ("docs/card.md", "notes.txt")
    assert joblib_loads == []


# -- malformed manifests ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(format_version=FORMAT_VERSION + 1), "upgrade modelkit"),
        (lambda d: d.update(format_version="1"), "format_version"),
        (lambda d: d.pop("files"), "'files'"),
        (lambda d: d.pop("name"), "'name'"),
        (lambda d: d.update(created_at="yesterday"), "created_at|manifest"),
        (lambda d: d.update(created_at="2024-05-01T12:00:00"), "timezone"),
        (lambda d: d["files"].update({"../escape": d["files"][MODEL_FILE]}), "escape"),
        (lambda d: d["files"].pop(MODEL_FILE), "model.joblib"),
        (lambda d: d["files"][MODEL_FILE].update(sha256="zz"), "sha256"),
        (lambda d: d["files"][MODEL_FILE].update(size=-1), "size"),
        (lambda d: d["files"].update({"x": "not an object"}), "files\\['x'\\]"),
        (lambda d: d.update(metrics={"acc": "high"}), "acc"),
        (lambda d: d.update(signature=[1, 2]), "signature"),
    ],
)
def test_a_malformed_manifest_is_a_format_error(
    saved: Path, joblib_loads: list[Any], change: Callable[[dict[str, Any]], object], match: str
) -> None:
    rewrite_manifest(saved, change)
    with pytest.raises(ArtifactFormatError, match=match):
        Artifact.load(saved)
    assert joblib_loads == []


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_an_unparsable_manifest_is_a_format_error(saved: Path, content: bytes) -> None:
    (saved / MANIFEST_FILE).write_bytes(content)
    with pytest.raises(ArtifactFormatError, match=MANIFEST_FILE):
        verify(saved)


def test_an_invalid_recorded_signature_is_a_format_error(saved: Path) -> None:
    rewrite_manifest(saved, lambda d: d.update(signature={"nonsense": True}))
    with pytest.raises(ArtifactFormatError, match="signature"):
        Artifact.load(saved)


def test_unknown_manifest_fields_are_ignored(saved: Path) -> None:
    rewrite_manifest(saved, lambda d: d.update(comment="added by a tool"))
    assert Artifact.load(saved).name == "churn"


# -- where there is no artifact -----------------------------------------------------------


def test_missing_paths_empty_directories_and_files_are_not_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "absent", tmp_path / "empty", tmp_path / "file"):
        with pytest.raises(NotFoundError, match="no modelkit artifact"):
            Artifact.load(path)


def test_a_temporary_directory_is_never_loaded(saved: Path) -> None:
    temp = _atomic.temporary_path(saved)
    shutil.copytree(saved, temp)
    assert _atomic.is_temporary_name(temp.name)
    with pytest.raises(NotFoundError, match="temporary directory"):
        Artifact.load(temp)
    with pytest.raises(NotFoundError, match="temporary directory"):
        verify(temp)


# -- library versions ---------------------------------------------------------------------


def _set_runtime(saved: Path, dist: str, value: str) -> None:
    rewrite_manifest(saved, lambda d: d["runtime"].update({dist: value}))


def test_another_scikit_learn_version_warns(saved: Path) -> None:
    _set_runtime(saved, "scikit-learn", "0.0.1")
    with pytest.warns(VersionMismatchWarning, match=r"scikit-learn 0\.0\.1"):
        Artifact.load(saved)


def test_strict_refuses_another_version_before_unpickling(
    saved: Path, joblib_loads: list[Any]
) -> None:
    _set_runtime(saved, "scikit-learn", "0.0.1")
    with pytest.raises(ArtifactError, match="strict=True"):
        Artifact.load(saved, strict=True)
    assert joblib_loads == []


@pytest.mark.parametrize("dist", ["numpy", "joblib"])
def test_numpy_and_joblib_warn_on_major_minor_only(saved: Path, dist: str) -> None:
    major, minor, *_ = version(dist).split(".")
    _set_runtime(saved, dist, f"{major}.{minor}.999")
    Artifact.load(saved)  # a patch difference is fine (warnings are errors here)

    _set_runtime(saved, dist, f"{major}.{int(minor) + 1}.0")
    with pytest.warns(VersionMismatchWarning, match=dist):
        Artifact.load(saved)


# -- saving: refusal, replacement, atomicity -----------------------------------------------


def test_an_existing_artifact_is_not_overwritten_by_default(
    artifact: Artifact, saved: Path
) -> None:
    before = sha256_of(saved / MANIFEST_FILE)
    with pytest.raises(ArtifactError, match="overwrite=True"):
        artifact.save(saved)
    assert sha256_of(saved / MANIFEST_FILE) == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_overwrite_replaces_the_artifact_and_leaves_nothing_behind(
    artifact: Artifact,
    saved: Path,
    estimator: LogisticRegression,
    monkeypatch: pytest.MonkeyPatch,
    exchange: bool,
) -> None:
    if not exchange:
        monkeypatch.setattr(_atomic, "_exchange", lambda a, b: False)
    newer = Artifact.from_model(estimator, name="churn", metrics={"accuracy": 0.99})
    assert newer.save(saved, overwrite=True) == saved

    loaded = Artifact.load(saved, expected_manifest_sha256=newer.manifest_sha256)
    assert loaded.metrics == {"accuracy": 0.99}
    assert loaded.extra_files == {}
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_a_directory_that_is_not_an_artifact_is_never_replaced(
    artifact: Artifact, tmp_path: Path
) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(ArtifactError, match="not an artifact"):
        artifact.save(target, overwrite=True)
    assert (target / "thesis.tex").read_text() == "years of work"


def test_an_empty_directory_or_missing_parents_are_fine(artifact: Artifact, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert Artifact.load(artifact.save(tmp_path / "empty")).name == "churn"
    assert Artifact.load(artifact.save(tmp_path / "a" / "b" / "c")).name == "churn"


def test_a_file_at_the_target_is_refused(artifact: Artifact, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="not a directory"):
        artifact.save(tmp_path / "f", overwrite=True)


def test_a_failed_save_leaves_nothing(estimator: LogisticRegression, tmp_path: Path) -> None:
    missing = Artifact.from_model(
        estimator, name="m", extra_files={"notes.txt": tmp_path / "absent.txt"}
    )
    with pytest.raises(NotFoundError, match=r"absent\.txt"):
        missing.save(tmp_path / "out" / "m")

    unpicklable = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    unpicklable.callback_ = lambda x: x  # a lambda cannot be pickled
    with pytest.raises(ArtifactError, match="cannot be pickled"):
        Artifact.from_model(unpicklable, name="m").save(tmp_path / "out" / "m")
    assert list((tmp_path / "out").iterdir()) == []


def test_save_writes_into_a_hidden_sibling_and_fsyncs_before_the_rename(
    artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "m"
    events: list[tuple[str, Path]] = []
    real_rename, real_file, real_dir = os.rename, _atomic._fsync_file, _atomic.fsync_directory

    def rename(src: Any, dst: Any) -> None:
        events.append(("rename", Path(src)))
        real_rename(src, dst)

    def fsync_file(path: Path) -> None:
        events.append(("fsync", path))
        real_file(path)

    def fsync_dir(path: Path) -> None:
        events.append(("fsync", path))
        real_dir(path)

    monkeypatch.setattr(_atomic.os, "rename", rename)
    monkeypatch.setattr(_atomic, "_fsync_file", fsync_file)
    monkeypatch.setattr(_atomic, "fsync_directory", fsync_dir)
    artifact.save(target)

    renames = [i for i, (kind, _) in enumerate(events) if kind == "rename"]
    assert len(renames) == 1
    temp = events[renames[0]][1]
    assert temp.parent == tmp_path
    assert _atomic.is_temporary_name(temp.name)
    synced_before = {path for kind, path in events[: renames[0]] if kind == "fsync"}
    written = {temp / p.relative_to(target) for p in target.rglob("*")}
    assert written | {temp} <= synced_before
    assert ("fsync", tmp_path) in events[renames[0] :]


# -- event hooks --------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Artifact, Path]] = []

    @hookimpl
    def on_artifact_saved(self, artifact: Artifact, path: Path) -> None:
        self.events.append(("saved", artifact, path))

    @hookimpl
    def on_artifact_loaded(self, artifact: Artifact, path: Path) -> None:
        self.events.append(("loaded", artifact, path))


def test_save_and_load_notify_the_event_hooks(
    artifact: Artifact, tmp_path: Path, plugin_manager: pluggy.PluginManager
) -> None:
    recorder = Recorder()
    plugin_manager.register(recorder)
    path = artifact.save(tmp_path / "m")
    loaded = Artifact.load(path)
    assert recorder.events == [("saved", artifact, path), ("loaded", loaded, path)]


def test_a_failing_hook_warns_and_the_save_stands(
    artifact: Artifact, tmp_path: Path, plugin_manager: pluggy.PluginManager
) -> None:
    class Broken:
        @hookimpl
        def on_artifact_saved(self, artifact: Artifact, path: Path) -> None:
            raise RuntimeError("audit log down")

    plugin_manager.register(Broken(), name="broken")
    with pytest.warns(HookFailedWarning, match="audit log down"):
        path = artifact.save(tmp_path / "m")
    assert Artifact.load(path).name == "churn"


def test_an_intact_model_that_cannot_be_unpickled_is_an_artifact_error(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise ModuleNotFoundError("No module named 'private_estimators'")

    monkeypatch.setattr(joblib, "load", fail)
    with pytest.raises(ArtifactError, match="intact but could not be unpickled") as info:
        Artifact.load(saved)
    assert not isinstance(info.value, ArtifactIntegrityError)
