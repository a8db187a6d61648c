"""The registry on SQLite: locations, URIs, schema and migrations, locking, fork and threads.

The behaviour every backend shares is checked by modelkit.testing's conformance suite (see
tests/integration/test_registry_conformance.py); this file covers the facade's own logic and
what is specific to SQLite, plus a stateful property test against a pure-Python model.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from modelkit import registry as registry_module
from modelkit._sql import MIGRATIONS, SCHEMA_VERSION, Migration, Tx
from modelkit.artifact import Artifact
from modelkit.default_plugins.postgres_registry import PostgresBackend, mask_password
from modelkit.default_plugins.sqlite_registry import SQLiteBackend
from modelkit.exceptions import ArtifactIntegrityError, NotFoundError, PluginError, RegistryError
from modelkit.hookspecs import hookimpl
from modelkit.registry import (
    AliasEvent,
    ModelRef,
    ModelVersion,
    Registry,
    RegistryBackend,
    Run,
    check_alias,
    check_model_name,
    parse_model_uri,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pluggy


@pytest.fixture(scope="module")
def estimator() -> Any:
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(30, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


@pytest.fixture
def make_artifact(estimator: Any, tmp_path: Path) -> Callable[[], Artifact]:
    counter = itertools.count()

    def make() -> Artifact:
        i = next(counter)
        artifact = Artifact.from_model(
            estimator, name="churn", extra_files={"nonce.txt": str(i).encode()}
        )
        artifact.save(tmp_path / "saved" / str(i))
        return artifact

    return make


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "home") as registry:
        yield registry


# -- names and URIs ---------------------------------------------------------------------------

NAMES = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
ALIASES = st.from_regex(r"\A[A-Za-z][A-Za-z0-9._-]{0,63}\Z")


@given(name=NAMES, version=st.integers(1, 10**9), alias=ALIASES)
def test_every_valid_reference_round_trips_through_its_uri(
    name: str, version: int, alias: str
) -> None:
    for ref in (ModelRef(name), ModelRef(name, version=version), ModelRef(name, alias=alias)):
        assert parse_model_uri(str(ref)) == ref
        assert parse_model_uri(str(ref).removeprefix("models:/")) == ref
    assert parse_model_uri(f"{name}/latest") == ModelRef(name)


@given(st.text(min_size=1, max_size=140))
def test_names_are_accepted_exactly_when_they_match_the_documented_pattern(text: str) -> None:
    valid = (
        len(text) <= 128
        and text[0].isascii()
        and text[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in text)
    )
    if valid:
        assert check_model_name(text) == text
    else:
        with pytest.raises(ValueError, match="invalid model name"):
            check_model_name(text)


def test_alias_names_must_start_with_a_letter() -> None:
    assert check_alias("production") == "production"
    with pytest.raises(ValueError, match="to pick a version by number use NAME/3"):
        check_alias("3")
    with pytest.raises(TypeError):
        parse_model_uri(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/churn/3", ModelRef("churn", version=3)),
        ("models:/churn@production", ModelRef("churn", alias="production")),
        ("churn@production", ModelRef("churn", alias="production")),
        ("churn/3", ModelRef("churn", version=3)),
        ("models:/churn", ModelRef("churn")),
        ("churn", ModelRef("churn")),
    ],
)
def test_the_documented_uri_forms(uri: str, expected: ModelRef) -> None:
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("churn/٣", "positive integer"),  # a non-ASCII digit
        ("churn/-1", "positive integer"),
        ("churn/0", "integer >= 1"),
        ("models://churn", "one slash"),
        ("churn@@prod", "invalid alias"),
    ],
)
def test_malformed_uris_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_model_uri(uri)


# -- records ----------------------------------------------------------------------------------


def test_records_validate_their_fields() -> None:
    now = datetime.now(timezone.utc)
    common: dict[str, Any] = {"artifact_sha256": "a" * 64, "artifact_uri": "file:///x"}
    with pytest.raises(ValueError, match="status"):
        ModelVersion(name="m", version=1, created_at=now, status="deleted", **common)
    with pytest.raises(ValueError, match="timezone-aware"):
        ModelVersion(name="m", version=1, created_at=now.replace(tzinfo=None), **common)
    with pytest.raises(ValueError, match="integer >= 1"):
        ModelVersion(name="m", version=0, created_at=now, **common)
    with pytest.raises(ValueError, match="status"):
        Run(id="x", name="m", started_at=now, status="paused")
    local = now.astimezone(timezone(timedelta(hours=5)))
    event = AliasEvent(
        id=1, name="m", alias="a", old_version=None, new_version=1, at=local, actor="me"
    )
    assert event.at.tzinfo is timezone.utc
    assert event.to_dict()["at"] == now.isoformat(timespec="microseconds")


# -- where a registry lives -------------------------------------------------------------------


def test_the_default_home_is_dot_modelkit_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_artifact: Callable[[], Artifact]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELKIT_HOME", raising=False)
    with Registry() as registry:
        version = registry.register("churn", make_artifact())
        assert registry.url == f"sqlite://{tmp_path}/.modelkit/registry.db"
    assert (tmp_path / ".modelkit" / "registry.db").is_file()
    key = version.artifact_sha256
    assert (tmp_path / ".modelkit" / "artifacts" / key[:2] / key / "manifest.json").is_file()


def test_modelkit_home_moves_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELKIT_HOME", str(tmp_path / "elsewhere"))
    with Registry() as registry:
        assert registry.url == f"sqlite://{tmp_path}/elsewhere/registry.db"
        assert registry.store.url == (tmp_path / "elsewhere" / "artifacts").as_uri()


@pytest.mark.parametrize("form", ["path", "file-url", "sqlite-url", "db-path"])
def test_directories_files_and_urls_select_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.setenv("MODELKIT_ARTIFACTS", str(tmp_path / "shared"))
    url, db, artifacts = {
        "path": (
            str(tmp_path / "reg"),
            tmp_path / "reg" / "registry.db",
            tmp_path / "reg/artifacts",
        ),
        "file-url": (
            (tmp_path / "reg").as_uri(),
            tmp_path / "reg" / "registry.db",
            tmp_path / "reg/artifacts",
        ),
        "sqlite-url": (
            f"sqlite://{tmp_path}/meta/r.db",
            tmp_path / "meta" / "r.db",
            tmp_path / "shared",
        ),
        "db-path": (str(tmp_path / "meta.sqlite"), tmp_path / "meta.sqlite", tmp_path / "shared"),
    }[form]
    with Registry(url) as registry:
        assert isinstance(registry.backend, SQLiteBackend)
        assert registry.backend.path == db
        assert registry.store.url == artifacts.as_uri()
        assert repr(registry) == f"Registry({registry.url!r}, artifacts={artifacts.as_uri()!r})"
    with Registry(url, artifacts=str(tmp_path / "explicit")) as registry:
        assert registry.store.url == (tmp_path / "explicit").as_uri()


def test_a_sqlite_url_without_the_environment_keeps_artifacts_next_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELKIT_ARTIFACTS", raising=False)
    with Registry(f"sqlite://{tmp_path}/meta/r.db?timeout=5") as registry:
        assert registry.store.url == (tmp_path / "meta" / "artifacts").as_uri()
        assert registry.backend.timeout == 5.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/x.db", "names host"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///tmp/dir/", "names no database file"),
        ("sqlite:///tmp/x.db?mode=ro", "unknown option"),
    ],
)
def test_bad_sqlite_urls_are_explained(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Registry(url)


def test_an_unknown_scheme_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="'postgresql', 'sqlite'") as info:
        Registry("mongodb://db/registry", artifacts=str(tmp_path))
    assert "register_registry_backends" in str(info.value)


def test_backends_are_plugins(
    tmp_path: Path, plugin_manager: pluggy.PluginManager, make_artifact: Callable[[], Artifact]
) -> None:
    opened: list[str] = []

    class Plugin:
        @hookimpl
        def register_registry_backends(self, register: Callable[..., None]) -> None:
            def factory(url: str) -> RegistryBackend:
                opened.append(url)
                return SQLiteBackend("sqlite://" + url.removeprefix("memo://"))

            register("memo", factory)
            register("broken", lambda url: object())

    plugin_manager.register(Plugin())
    with Registry(f"memo://{tmp_path}/m.db", artifacts=str(tmp_path / "a")) as registry:
        assert registry.register("churn", make_artifact()).version == 1
    assert opened == [f"memo://{tmp_path}/m.db"]
    with pytest.raises(PluginError, match="lacks the RegistryBackend methods"):
        Registry("broken://x", artifacts=str(tmp_path / "a"))


def test_both_builtin_backends_implement_the_protocol(registry: Registry) -> None:
    assert isinstance(registry.backend, RegistryBackend)
    members = [name for name in vars(RegistryBackend) if not name.startswith("_")]
    assert {"create_version", "change_alias", "delete_if_unreferenced", "url"} <= set(members)
    for backend in (SQLiteBackend, PostgresBackend):
        assert [name for name in members if not hasattr(backend, name)] == []


def test_postgres_urls_never_show_passwords() -> None:
    assert mask_password("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_password("postgresql://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        PostgresBackend("mysql://u@h/db")


# -- SQLite specifics -------------------------------------------------------------------------


def _pragma(registry: Registry, name: str) -> Any:
    with registry.backend.transaction(write=False) as tx:  # type: ignore[attr-defined]
        row = tx.one(f"PRAGMA {name}")
    return row[0]


def test_sqlite_uses_wal_foreign_keys_and_a_busy_timeout(registry: Registry) -> None:
    assert _pragma(registry, "journal_mode") == "wal"
    assert _pragma(registry, "foreign_keys") == 1
    assert _pragma(registry, "busy_timeout") == 30_000
    assert _pragma(registry, "synchronous") == 2  # FULL


def test_the_alias_event_log_is_append_only_in_the_database(
    registry: Registry, make_artifact: Callable[[], Artifact]
) -> None:
    registry.register("churn", make_artifact())
    registry.set_alias("churn", "production", 1)
    conn = sqlite3.connect(registry.backend.path, isolation_level=None)  # type: ignore[attr-defined]
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        for statement in (
            "UPDATE modelkit_alias_events SET new_version = 2",
            "DELETE FROM modelkit_alias_events",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute("DELETE FROM modelkit_versions")  # an alias points to version 1
    finally:
        conn.close()
    assert len(registry.history("churn")) == 1


def test_a_writer_waiting_too_long_gets_a_clear_error_and_leaves_only_a_stray_artifact(
    tmp_path: Path, make_artifact: Callable[[], Artifact]
) -> None:
    url = f"sqlite://{tmp_path}/r.db?timeout=0.2"
    with Registry(url, artifacts=str(tmp_path / "a")) as registry:
        blocker = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(RegistryError, match="cannot start a transaction"):
                registry.register("churn", make_artifact())
            assert registry.list() == []  # readers are not blocked by the writer
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert len(list(registry.store.keys())) == 1
        assert len(registry.gc(grace_seconds=0)) == 1
        assert registry.register("churn", make_artifact()).version == 1


def test_each_thread_gets_its_own_connection(registry: Registry) -> None:
    pool = registry.backend._pool  # type: ignore[attr-defined]
    seen: dict[int, int] = {}

    def work(i: int) -> None:
        registry.runs()
        seen[i] = id(pool.local.conn)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    main = id(pool.get())
    assert len(set(seen.values()) | {main}) == 5
    assert sorted(map(id, pool.all)) == sorted([*seen.values(), main])


def test_a_closed_registry_refuses_work(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.list()
    registry.close()
    with pytest.raises(RegistryError, match="was closed"):
        registry.list()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reconnects_and_leaves_the_parent_connection_alone(
    registry: Registry, make_artifact: Callable[[], Artifact]
) -> None:
    registry.register("churn", make_artifact())
    artifact = make_artifact()
    parent_conn = registry.backend._pool.get()  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:  # the child: register through the inherited object, then leave at once
        code = 1
        try:
            code = 0 if registry.register("churn", artifact).version == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 0
    assert registry.backend._pool.get() is parent_conn  # type: ignore[attr-defined]
    assert [v.artifact_sha256 for v in registry.versions("churn")][1] == artifact.manifest_sha256
    assert registry.register("churn", make_artifact()).version == 3


# -- facade details ---------------------------------------------------------------------------


def test_the_actor_falls_back_to_unknown_at_host(
    registry: Registry, make_artifact: Callable[[], Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass
    import socket

    def no_user() -> str:
        raise OSError("no login name")

    monkeypatch.delenv("MODELKIT_ACTOR", raising=False)
    monkeypatch.setattr(getpass, "getuser", no_user)
    registry.register("churn", make_artifact())
    assert registry.set_alias("churn", "a", 1).actor == f"unknown@{socket.gethostname()}"


def test_an_alias_history_never_goes_back_in_time(
    registry: Registry, make_artifact: Callable[[], Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        registry.register("churn", make_artifact())
    first = registry.set_alias("churn", "production", 1)
    monkeypatch.setattr(registry_module, "_now", lambda: first.at - timedelta(hours=1))
    second = registry.set_alias("churn", "production", 2)  # the clock stepped back
    assert second.at == first.at
    assert second.id > first.id
    assert registry.alias_at("churn", "production", first.at) == 2


def test_register_takes_only_artifacts(registry: Registry, estimator: Any) -> None:
    with pytest.raises(TypeError, match=r"Artifact\.from_model"):
        registry.register("churn", estimator)


def test_a_saved_artifact_registers_from_its_path_without_unpickling(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's class lives in a module that is gone by the time it is registered."""
    import importlib
    import sys

    source = tmp_path / "gone"
    source.mkdir()
    (source / "vanishing.py").write_text(
        "import numpy as np\n"
        "class Majority:\n"
        "    def fit(self, X, y):\n"
        "        self.classes_ = np.unique(y)\n"
        "        return self\n"
        "    def predict(self, X):\n"
        "        return np.full(len(X), self.classes_[0])\n"
    )
    monkeypatch.syspath_prepend(str(source))
    module = importlib.import_module("vanishing")
    X = np.zeros((4, 2))
    estimator = module.Majority().fit(X, np.array([0, 1, 1, 0]))
    saved = Artifact.from_model(estimator, name="m", sample=X, metrics={"accuracy": 0.5}).save(
        tmp_path / "saved"
    )
    del sys.modules["vanishing"]
    shutil.rmtree(source)
    version = registry.register("churn", str(saved))
    assert "vanishing" not in sys.modules  # nothing was unpickled
    assert (version.version, version.metrics) == (1, {"accuracy": 0.5})
    assert registry.store.exists(version.artifact_sha256.removeprefix("sha256:"))
    (saved / "extra.txt").write_text("not in the manifest")
    with pytest.raises(ArtifactIntegrityError, match=r"extra\.txt"):
        registry.register("churn", saved)
    with pytest.raises(NotFoundError):
        registry.register("churn", tmp_path / "nothing-here")
    assert [v.version for v in registry.versions("churn")] == [1]


def test_gc_leaves_foreign_keys_alone_and_validates_grace(
    registry: Registry, make_artifact: Callable[[], Artifact]
) -> None:
    artifact = make_artifact()
    assert artifact.path is not None
    registry.store.put(artifact.path, "not-a-content-address")
    assert registry.gc(grace_seconds=0) == []
    assert registry.store.exists("not-a-content-address")
    with pytest.raises(ValueError, match="grace_seconds"):
        registry.gc(grace_seconds=-1)


def test_runs_validate_limit_and_finish_arguments(registry: Registry) -> None:
    run = registry.start_run("churn")
    with pytest.raises(ValueError, match="limit"):
        registry.runs(limit=-1)
    with pytest.raises(ValueError, match="integer >= 1"):
        registry.finish_run(run.id, version=0)
    with pytest.raises(ValueError, match="run id"):
        registry.get_run("")
    assert registry.runs(limit=0) == []


def test_set_tags_checks_types(registry: Registry, make_artifact: Callable[[], Artifact]) -> None:
    registry.register("churn", make_artifact())
    with pytest.raises(TypeError, match="tags map strings"):
        registry.set_tags("churn", 1, {"a": 1})  # type: ignore[dict-item]


# -- schema versions and migrations -----------------------------------------------------------


def _add_note_column(tx: Tx) -> None:
    tx.execute("ALTER TABLE modelkit_runs ADD COLUMN note TEXT")
    tx.execute("UPDATE modelkit_runs SET note = 'migrated'")


V2 = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "add runs.note", _add_note_column))


def test_a_new_database_gets_the_current_schema(registry: Registry) -> None:
    assert registry.backend.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]


def test_an_older_database_is_migrated_in_place_on_open(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/r.db"
    with Registry(url, artifacts=str(tmp_path / "a")) as registry:
        run = registry.start_run("churn", params={"C": 1})
    backend = SQLiteBackend(url, migrations=V2)
    try:
        assert backend.schema_version() == SCHEMA_VERSION + 1
        with backend.transaction(write=False) as tx:
            assert tx.one("SELECT note FROM modelkit_runs") == ("migrated",)
        assert backend.get_run(run.id) == run
    finally:
        backend.close()
    again = SQLiteBackend(url, migrations=V2)  # already migrated: nothing to do
    again.close()
    with pytest.raises(RegistryError, match="upgrade modelkit"):
        Registry(url, artifacts=str(tmp_path / "a"))


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/r.db"
    SQLiteBackend(url).close()

    def half_done(tx: Tx) -> None:
        tx.execute("CREATE TABLE modelkit_half (x INTEGER)")
        raise RuntimeError("step failed")

    broken = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "broken", half_done))
    with pytest.raises(RuntimeError, match="step failed"):
        SQLiteBackend(url, migrations=broken)
    backend = SQLiteBackend(url)
    try:
        assert backend.schema_version() == SCHEMA_VERSION
        with backend.transaction(write=False) as tx:
            assert not backend.table_exists(tx, "modelkit_half")
    finally:
        backend.close()


def test_a_schema_4_database_gains_the_retraining_tables_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/r.db"
    four = SQLiteBackend(url, migrations=MIGRATIONS[:4])
    try:
        assert four.schema_version() == 4
        with four.transaction(write=False) as tx:
            assert not four.table_exists(tx, "modelkit_retrain_events")
    finally:
        four.close()
    with Registry(url, artifacts=str(tmp_path / "a")) as registry:
        run = registry.start_run("churn")
        event = registry.record_retrain_event("churn", "triggered", details={"n": 3})
        assert registry.retrain_events("churn") == [event]
        assert registry.get_run(run.id) == run
        assert registry.backend.schema_version() == 5  # type: ignore[attr-defined]


def test_the_retrain_event_log_is_append_only(registry: Registry) -> None:
    registry.record_retrain_event("churn", "promoted", champion=1, challenger=2)
    backend: Any = registry.backend
    for statement in (
        "UPDATE modelkit_retrain_events SET kind = 'rejected'",
        "DELETE FROM modelkit_retrain_events",
    ):
        with (
            pytest.raises(RegistryError, match="append-only"),
            backend.transaction(write=True) as tx,
        ):
            tx.execute(statement)
    assert [e.kind for e in registry.retrain_events()] == ["promoted"]


class _NoRetrainStore:
    """A backend proxy without the retraining methods, like a third-party backend."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in {"record_retrain_event", "list_retrain_events", "acquire_lease"}:
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_backend_without_retraining_methods_is_refused_clearly(registry: Registry) -> None:
    other: Any = object.__new__(Registry)
    other.__attrs_init__(_NoRetrainStore(registry.backend), registry.store)
    with pytest.raises(RegistryError, match="cannot store retraining events and leases"):
        other.retrain_events()
    with pytest.raises(RegistryError, match="cannot store retraining events"):
        other.acquire_lease("churn", "me", seconds=1)


def test_a_database_opened_concurrently_for_the_first_time_is_created_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path}/r.db"
    barrier = threading.Barrier(6)
    backends: list[SQLiteBackend] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            barrier.wait()
            backends.append(SQLiteBackend(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {b.schema_version() for b in backends} == {SCHEMA_VERSION}
    for backend in backends:
        backend.close()


# -- a stateful property: the registry behaves like a tiny pure-Python model -----------------


class RegistryMachine(RuleBasedStateMachine):
    """Random sequences of registers, alias moves, removals, rollbacks and archives."""

    artifact: Artifact

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="modelkit-machine-"))
        self.registry = Registry(self.dir)
        self.versions: dict[int, str] = {}  # version -> status
        self.aliases: dict[str, int] = {}
        self.events: list[tuple[str, int | None, int | None]] = []

    def teardown(self) -> None:
        self.registry.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule()
    def register(self) -> None:
        version = self.registry.register("m", self.artifact).version
        assert version == len(self.versions) + 1
        self.versions[version] = "active"

    @precondition(lambda self: self.versions)
    @rule(alias=st.sampled_from(["a", "b"]), pick=st.integers(1, 10))
    def set_alias(self, alias: str, pick: int) -> None:
        version = (pick - 1) % len(self.versions) + 1
        if self.versions[version] == "archived":
            with pytest.raises(RegistryError, match="archived"):
                self.registry.set_alias("m", alias, version)
            return
        self.registry.set_alias("m", alias, version)
        if self.aliases.get(alias) != version:
            self.events.append((alias, self.aliases.get(alias), version))
            self.aliases[alias] = version

    @precondition(lambda self: self.versions)
    @rule(alias=st.sampled_from(["a", "b"]))
    def remove_alias(self, alias: str) -> None:
        if alias not in self.aliases:
            with pytest.raises(NotFoundError):
                self.registry.remove_alias("m", alias)
            return
        self.registry.remove_alias("m", alias)
        self.events.append((alias, self.aliases.pop(alias), None))

    @precondition(lambda self: self.versions)
    @rule(alias=st.sampled_from(["a", "b"]))
    def rollback(self, alias: str) -> None:
        mine = [e for e in self.events if e[0] == alias]
        target = mine[-1][1] if mine else None
        if not mine:
            with pytest.raises(NotFoundError):
                self.registry.rollback("m", alias)
        elif target is None or self.versions[target] == "archived":
            with pytest.raises(RegistryError):
                self.registry.rollback("m", alias)
        else:
            assert self.registry.rollback("m", alias).reason == "rollback"
            self.events.append((alias, self.aliases.get(alias), target))
            self.aliases[alias] = target

    @precondition(lambda self: self.versions)
    @rule(pick=st.integers(1, 10))
    def archive(self, pick: int) -> None:
        version = (pick - 1) % len(self.versions) + 1
        if version in self.aliases.values():
            with pytest.raises(RegistryError, match="point to it"):
                self.registry.archive("m", version)
            return
        self.registry.archive("m", version)
        self.versions[version] = "archived"

    @invariant()
    def matches_the_model(self) -> None:
        if not self.versions:
            return
        got = self.registry.versions("m")
        assert {v.version: v.status for v in got} == self.versions
        assert self.registry.aliases("m") == self.aliases
        history = self.registry.history("m")
        assert [(e.alias, e.old_version, e.new_version) for e in history] == self.events
        active = [v for v, s in self.versions.items() if s == "active"]
        assert self.registry.get_model("m").latest_version == (max(active) if active else None)


@pytest.fixture
def machine_artifact(make_artifact: Callable[[], Artifact]) -> Iterator[None]:
    RegistryMachine.artifact = make_artifact()
    yield
    del RegistryMachine.artifact


@pytest.mark.usefixtures("machine_artifact")
def test_the_registry_behaves_like_its_model() -> None:
    run_state_machine_as_test(
        RegistryMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


class _Observer:
    def __init__(self) -> None:
        self.versions: list[tuple[str, int]] = []
        self.events: list[tuple[str, int | None, int | None]] = []

    @hookimpl
    def on_model_registered(self, registry: Registry, version: ModelVersion) -> None:
        self.versions.append((version.name, version.version))

    @hookimpl
    def on_alias_changed(self, registry: Registry, event: AliasEvent) -> None:
        self.events.append((event.alias, event.old_version, event.new_version))


def test_event_hooks_see_registrations_and_real_alias_changes(
    tmp_path: Path, plugin_manager: pluggy.PluginManager
) -> None:
    observer = _Observer()
    plugin_manager.register(observer, name="observer")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    estimator = LogisticRegression().fit(X, y)
    with Registry(str(tmp_path / "hooks")) as registry:
        for _ in range(2):
            registry.register("obs", Artifact.from_model(estimator, name="obs", sample=X))
        registry.set_alias("obs", "production", 1)
        registry.set_alias("obs", "production", 1)  # no change, no event
        registry.set_alias("obs", "production", 2)
        registry.rollback("obs", "production")
        registry.remove_alias("obs", "production")
    assert observer.versions == [("obs", 1), ("obs", 2)]
    assert observer.events == [
        ("production", None, 1),
        ("production", 1, 2),
        ("production", 2, 1),
        ("production", 1, None),
    ]
