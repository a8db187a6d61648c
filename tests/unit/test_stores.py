"""Artifact stores: the protocol, open_store by URL scheme, and the local ``file`` store."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modelkit import _atomic
from modelkit.artifact import MANIFEST_FILE, MODEL_FILE, Artifact
from modelkit.default_plugins import local_store
from modelkit.default_plugins.local_store import LocalArtifactStore
from modelkit.exceptions import (
    ArtifactError,
    ArtifactIntegrityError,
    NotFoundError,
    PluginError,
)
from modelkit.hookspecs import hookimpl
from modelkit.stores import ArtifactStore, open_store, url_scheme

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pluggy


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=120, n_features=4, random_state=1)


def _save(tmp_path: Path, data: tuple[np.ndarray, np.ndarray], name: str, c: float) -> Artifact:
    X, y = data
    artifact = Artifact.from_model(
        LogisticRegression(C=c).fit(X, y),
        name=name,
        sample=X,
        extra_files={"docs/notes.txt": f"C={c}".encode()},
    )
    artifact.save(tmp_path / "src" / name)
    return artifact


@pytest.fixture
def first(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> Artifact:
    return _save(tmp_path, data, "first", 1.0)


@pytest.fixture
def second(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> Artifact:
    return _save(tmp_path, data, "second", 0.1)


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "store")


def _path(artifact: Artifact) -> Path:
    assert artifact.path is not None
    return artifact.path


# -- the local store ----------------------------------------------------------------------


def test_put_get_load_round_trip(
    store: LocalArtifactStore, first: Artifact, data: tuple[np.ndarray, np.ndarray]
) -> None:
    key = first.manifest_sha256
    url = store.put(_path(first), key)

    where = store.get(key)
    assert where == store.root / key[:2] / key
    assert url == where.as_uri()
    loaded = Artifact.load(where, expected_manifest_sha256=key)
    X, _ = data
    np.testing.assert_array_equal(loaded.model.predict(X), first.model.predict(X))
    assert loaded.extra_files["docs/notes.txt"].read_bytes() == b"C=1.0"


def test_exists_keys_and_delete(
    store: LocalArtifactStore, first: Artifact, second: Artifact
) -> None:
    keys = sorted([first.manifest_sha256, second.manifest_sha256])
    assert list(store.keys()) == []
    assert not store.exists(keys[0])
    for artifact in (first, second):
        store.put(_path(artifact), artifact.manifest_sha256)
    assert list(store.keys()) == keys
    assert all(store.exists(k) for k in keys)

    store.delete(keys[0])
    assert not store.exists(keys[0])
    assert list(store.keys()) == keys[1:]
    assert not (store.root / keys[0][:2] / keys[0]).exists()
    assert list(store.root.rglob(".*")) == []  # nothing left aside by the deletion


def test_put_is_idempotent_for_the_same_content(store: LocalArtifactStore, first: Artifact) -> None:
    key = first.manifest_sha256
    url = store.put(_path(first), key)
    manifest = store.get(key) / MANIFEST_FILE
    inode = manifest.stat().st_ino
    assert store.put(_path(first), key) == url
    assert manifest.stat().st_ino == inode  # not rewritten
    assert list(store.keys()) == [key]


def test_put_refuses_other_content_under_an_existing_key(
    store: LocalArtifactStore, first: Artifact, second: Artifact
) -> None:
    key = first.manifest_sha256
    store.put(_path(first), key)
    with pytest.raises(ArtifactError, match="different artifact"):
        store.put(_path(second), key)
    Artifact.load(store.get(key), expected_manifest_sha256=key)


def test_put_refuses_a_damaged_source_and_stores_nothing(
    store: LocalArtifactStore, first: Artifact
) -> None:
    model = _path(first) / MODEL_FILE
    model.write_bytes(model.read_bytes()[:-1])
    with pytest.raises(ArtifactIntegrityError, match=MODEL_FILE):
        store.put(_path(first), first.manifest_sha256)
    assert not store.exists(first.manifest_sha256)
    assert list(store.root.rglob("*")) == []


def test_put_refuses_a_directory_without_manifest(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(NotFoundError, match=MANIFEST_FILE):
        store.put(tmp_path / "junk", "k1")


def test_put_detects_a_source_changing_during_the_copy(
    store: LocalArtifactStore, first: Artifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _atomic.copy_file_hashed

    def copy_then_change(src: Path, dst: Path) -> tuple[str, int]:
        digest, size = real(src, dst)
        if src.name == MODEL_FILE:
            return "0" * 64, size  # what a concurrent writer would make us read
        return digest, size

    monkeypatch.setattr(_atomic, "copy_file_hashed", copy_then_change)
    with pytest.raises(ArtifactIntegrityError, match="changed while it was being copied"):
        store.put(_path(first), first.manifest_sha256)
    assert not store.exists(first.manifest_sha256)
    assert list(store.root.rglob(".*")) == []


def test_put_repairs_a_damaged_entry_with_the_same_manifest(
    store: LocalArtifactStore, first: Artifact
) -> None:
    key = first.manifest_sha256
    store.put(_path(first), key)
    stored_model = store.get(key) / MODEL_FILE
    stored_model.write_bytes(b"garbage")
    with pytest.raises(ArtifactIntegrityError):
        Artifact.load(store.get(key), expected_manifest_sha256=key)

    store.put(_path(first), key)
    Artifact.load(store.get(key), expected_manifest_sha256=key)
    assert sorted(p.name for p in store.get(key).parent.iterdir()) == [key]


def test_concurrent_puts_of_the_same_key_agree(store: LocalArtifactStore, first: Artifact) -> None:
    key = first.manifest_sha256
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def put() -> None:
        barrier.wait()
        try:
            results.append(store.put(_path(first), key))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert list(store.keys()) == [key]
    Artifact.load(store.get(key), expected_manifest_sha256=key)
    assert sorted(p.name for p in store.get(key).parent.iterdir()) == [key]


def test_keys_skip_temporary_and_foreign_entries(
    store: LocalArtifactStore, first: Artifact
) -> None:
    key = first.manifest_sha256
    store.put(_path(first), key)
    shard = store.root / key[:2]
    _atomic.make_temporary_sibling(shard / key)  # an interrupted put
    _atomic.make_temporary_sibling(shard / "zz-other")
    (shard / "loose-file").write_text("x")
    (store.root / ".hidden").mkdir()
    (store.root / "README").write_text("x")
    (store.root / "qq").mkdir()
    (store.root / "qq" / "not-in-its-shard").mkdir()
    assert list(store.keys()) == [key]


@pytest.mark.parametrize("key", ["", ".hidden", "a/b", "../x", "x" * 201, "sp ace", "é"])
def test_invalid_keys_are_refused(store: LocalArtifactStore, key: str) -> None:
    for call in (store.get, store.exists, store.delete):
        with pytest.raises(ValueError, match="invalid artifact key"):
            call(key)


def test_missing_keys_are_not_found(store: LocalArtifactStore) -> None:
    with pytest.raises(NotFoundError, match="abc"):
        store.get("abc")
    with pytest.raises(NotFoundError, match="abc"):
        store.delete("abc")
    assert not store.exists("abc")


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("file:///srv/models", "/srv/models"),
        ("file://localhost/srv/models", "/srv/models"),
        ("file:///srv/my%20models", "/srv/my models"),
        ("/srv/models", "/srv/models"),
    ],
)
def test_store_urls(url: str, root: str) -> None:
    store = LocalArtifactStore.from_url(url)
    assert store.root == Path(root)
    assert store.url == Path(root).as_uri()


def test_a_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert LocalArtifactStore.from_url("artifacts").root == tmp_path / "artifacts"


def test_a_remote_file_url_is_refused() -> None:
    with pytest.raises(ValueError, match="host 'fileserver'"):
        LocalArtifactStore.from_url("file://fileserver/share")


def test_the_local_store_satisfies_the_protocol(store: LocalArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)


# -- open_store ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("/srv/a", "file"),
        ("rel/a", "file"),
        ("file:///srv/a", "file"),
        ("S3://bucket/a", "s3"),
        ("gs://b", "gs"),
    ],
)
def test_url_scheme(url: str, scheme: str) -> None:
    assert url_scheme(url) == scheme


def test_open_store_gives_the_local_store_for_paths_and_file_urls(tmp_path: Path) -> None:
    for url in (tmp_path, str(tmp_path), tmp_path.as_uri()):
        store = open_store(url)
        assert isinstance(store, LocalArtifactStore)
        assert store.root == tmp_path
        assert store.url == tmp_path.as_uri()


def test_open_store_names_the_known_schemes_for_an_unknown_one() -> None:
    with pytest.raises(NotFoundError, match=r"'s3'.*known schemes: 'file'"):
        open_store("s3://bucket/artifacts")


class MemoryStore:
    """A toy store kept in a dict, standing in for a third-party plugin."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root
        self.items: dict[str, Path] = {}

    def put(self, src: Path, key: str) -> str:
        dest = self.root / key
        if not dest.exists():
            shutil.copytree(src, dest)
        self.items[key] = dest
        return f"{self.url}/{key}"

    def get(self, key: str) -> Path:
        try:
            return self.items[key]
        except KeyError as exc:
            raise NotFoundError(key) from exc

    def exists(self, key: str) -> bool:
        return key in self.items

    def delete(self, key: str) -> None:
        shutil.rmtree(self.items.pop(key))

    def keys(self) -> Iterator[str]:
        return iter(sorted(self.items))


def test_a_plugin_adds_a_scheme(
    plugin_manager: pluggy.PluginManager, tmp_path: Path, first: Artifact
) -> None:
    class MemoryPlugin:
        @hookimpl
        def register_artifact_stores(self, register: Callable[[str, Any], None]) -> None:
            register("mem", lambda url: MemoryStore(url, tmp_path / "mem"))

    (tmp_path / "mem").mkdir()
    plugin_manager.register(MemoryPlugin(), name="memory")
    store = open_store("mem://scratch")
    assert isinstance(store, MemoryStore)
    key = first.manifest_sha256
    assert store.put(_path(first), key) == f"mem://scratch/{key}"
    assert Artifact.load(store.get(key), expected_manifest_sha256=key).name == "first"
    assert isinstance(open_store(tmp_path), LocalArtifactStore)  # the built-in one still works


def test_a_factory_returning_something_else_is_a_plugin_error(
    plugin_manager: pluggy.PluginManager,
) -> None:
    class BadPlugin:
        @hookimpl
        def register_artifact_stores(self, register: Callable[[str, Any], None]) -> None:
            register("bad", lambda url: object())

    plugin_manager.register(BadPlugin(), name="bad")
    with pytest.raises(PluginError, match=r"'bad'.*object"):
        open_store("bad://x")


def test_disabling_the_local_store_plugin_removes_the_file_scheme(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from modelkit.plugins import make_plugin_manager, use_plugin_manager

    monkeypatch.setenv("MODELKIT_DISABLE_PLUGINS", "modelkit.local_store")
    with (
        use_plugin_manager(make_plugin_manager(load_entrypoints=False)),
        pytest.raises(NotFoundError, match="known schemes: none"),
    ):
        open_store(tmp_path)


def test_the_default_plugin_registers_the_file_scheme() -> None:
    found: dict[str, Any] = {}
    local_store.register_artifact_stores(register=found.__setitem__)
    assert set(found) == {"file"}
    assert isinstance(found["file"]("/srv/x"), LocalArtifactStore)
