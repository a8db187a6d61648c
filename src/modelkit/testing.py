"""Conformance tests for plugin authors: run modelkit's own checks against your plugin.

Registry backends
-----------------

:class:`RegistryConformance` is a pytest test class that checks every promise a
:class:`~modelkit.Registry` makes (version numbering under concurrent writers, aliases and
their event history, rollback, archiving, runs, gc, timestamps, persistence, recorded
predictions and their delayed labels, with retention, alerts, retraining decisions and
retraining leases) through the public
API, on whatever backend a URL selects. modelkit runs it against SQLite and PostgreSQL; run it
against yours by subclassing it in your test suite and overriding the ``registry_url``
fixture::

    # tests/test_my_backend.py
    import pytest
    from modelkit.testing import RegistryConformance

    class TestMyBackend(RegistryConformance):
        @pytest.fixture
        def registry_url(self, tmp_path):
            # a URL whose scheme your plugin registers through register_registry_backends,
            # naming a fresh, empty database for every test
            return f"mydb://{tmp_path}/registry"

Your plugin must be registered with the plugin manager the tests use (through its entry point,
or ``modelkit.plugins.get_plugin_manager().register(my_plugin)`` in a ``conftest.py``
fixture). Override ``artifacts_url`` as well to test against another artifact store (it
defaults to a local directory under ``tmp_path``). The tests need pytest and scikit-learn.
Concurrency here uses threads; modelkit's own suite adds multi-process and kill tests.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from modelkit.exceptions import ArtifactIntegrityError, NotFoundError, RegistryError, UsageError
from modelkit.registry import PredictionRecord, Registry, Run

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from modelkit.artifact import Artifact
    from modelkit.registry import AliasEvent

__all__ = ["RegistryConformance"]


def _expected_at(events: list[AliasEvent], when: datetime) -> int | None:
    """What an alias pointed to at ``when``, computed from its history in Python."""
    target = None
    for event in events:
        if event.at <= when:
            target = event.new_version
    return target


def _run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together by a barrier; re-raise errors."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


class RegistryConformance:
    """Everything a registry backend must do; subclass and override ``registry_url``."""

    # -- fixtures to override ------------------------------------------------------------

    @pytest.fixture
    def registry_url(self) -> str:
        """The URL of a fresh, empty registry database: override this fixture."""
        pytest.fail("override the registry_url fixture to name a fresh database of your backend")

    @pytest.fixture
    def artifacts_url(self, tmp_path: Path) -> str:
        """The artifact store URL (default: a local directory under ``tmp_path``)."""
        return str(tmp_path / "artifacts")

    # -- fixtures used by the tests ------------------------------------------------------

    @pytest.fixture
    def registry(self, registry_url: str, artifacts_url: str) -> Iterator[Registry]:
        """An open registry on the backend under test."""
        with Registry(registry_url, artifacts=artifacts_url) as registry:
            yield registry

    @pytest.fixture
    def make_artifact(self, tmp_path: Path) -> Callable[..., Artifact]:
        """``make_artifact(name="churn", *, metrics=None, save=True)``: a new, distinct artifact."""
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        from modelkit.artifact import Artifact

        rng = np.random.default_rng(0)
        X = rng.normal(size=(40, 3))
        y = (X[:, 0] > 0).astype(int)
        estimator = LogisticRegression().fit(X, y)
        counter = itertools.count()

        def make(
            name: str = "churn", *, metrics: dict[str, float] | None = None, save: bool = True
        ) -> Artifact:
            i = next(counter)
            artifact = Artifact.from_model(
                estimator,
                name=name,
                sample=X,
                metrics={"accuracy": 0.5 + i / 1000} if metrics is None else metrics,
                extra_files={"nonce.txt": str(i).encode()},
            )
            if save:
                artifact.save(tmp_path / "saved" / f"{name}-{i}")
            return artifact

        return make

    # -- versions ------------------------------------------------------------------------

    def test_versions_count_from_one_per_name(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        numbers = [registry.register("churn", make_artifact()).version for _ in range(3)]
        other = registry.register("fraud", make_artifact("fraud")).version
        assert numbers == [1, 2, 3]
        assert other == 1
        assert [v.version for v in registry.versions("churn")] == [1, 2, 3]

    def test_register_records_what_it_was_given(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        artifact = make_artifact(metrics={"accuracy": 0.75, "auc": math.nan})
        run = registry.start_run("churn")
        version = registry.register(
            "churn", artifact, tags={"team": "risk"}, run=run, description="first"
        )
        assert version.artifact_sha256 == artifact.manifest_sha256
        assert version.artifact_uri == registry.store.get(artifact.manifest_sha256).as_uri()
        assert version.tags == {"team": "risk"}
        assert version.run_id == run.id
        assert version.description == "first"
        assert version.status == "active"
        assert version.metrics["accuracy"] == 0.75
        assert math.isnan(version.metrics["auc"])
        assert version.uri == "models:/churn/1"
        assert registry.get("churn", 1).to_dict() == version.to_dict()  # NaN != NaN in ==
        assert registry.get_run(run.id).version == 1

    def test_register_accepts_an_unsaved_artifact_and_leaves_it_unsaved(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        artifact = make_artifact(save=False)
        version = registry.register("churn", artifact)
        assert artifact.path is None
        loaded = registry.load_artifact(version.uri)
        assert loaded.manifest_sha256 == version.artifact_sha256
        assert loaded.extra_files.keys() == {"nonce.txt"}

    def test_register_refuses_an_artifact_changed_since_it_was_saved(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        artifact = make_artifact()
        assert artifact.path is not None
        manifest = artifact.path / "manifest.json"
        manifest.write_bytes(manifest.read_bytes().replace(b'"accuracy"', b'"acccuracy"'))
        with pytest.raises(ArtifactIntegrityError, match="changed on disk"):
            registry.register("churn", artifact)
        with pytest.raises(NotFoundError):
            registry.versions("churn")

    def test_load_verifies_against_the_recorded_hash(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        version = registry.register("churn", make_artifact())
        model = registry.load("churn")
        assert model.predict([[1.0, 0.0, 0.0]]).shape == (1,)
        stored = registry.store.get(version.artifact_sha256)
        (stored / "nonce.txt").write_bytes(b"tampered")
        with pytest.raises(ArtifactIntegrityError):
            registry.load("churn/1")

    def test_resolve_understands_every_uri_form(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        for _ in range(3):
            registry.register("churn", make_artifact())
        registry.set_alias("churn", "production", 2)
        for uri, expected in [
            ("models:/churn/1", 1),
            ("churn/3", 3),
            ("models:/churn@production", 2),
            ("churn@production", 2),
            ("models:/churn", 3),
            ("churn", 3),
            ("churn/latest", 3),
        ]:
            assert registry.resolve(uri).version == expected, uri

    @pytest.mark.parametrize(
        "uri",
        [
            "",
            "models:/",
            "models://churn",
            "-churn",
            "churn/0",
            "churn/x",
            "churn@",
            "churn@1a",
            "churn@prod uction",
            "a" * 129,
            "churn/1/2",
        ],
    )
    def test_malformed_uris_are_rejected(self, registry: Registry, uri: str) -> None:
        with pytest.raises(ValueError, match="invalid"):
            registry.resolve(uri)

    def test_invalid_names_and_aliases_are_rejected(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        for name in ["", "has space", "_hidden", "x" * 129, "a/b", "é"]:
            with pytest.raises(ValueError, match="invalid model name"):
                registry.register(name, make_artifact())
        registry.register("churn", make_artifact())
        for alias in ["3", "", "a b", "-x", "x" * 65]:
            with pytest.raises(ValueError, match="invalid alias"):
                registry.set_alias("churn", alias, 1)

    def test_missing_things_raise_not_found(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        with pytest.raises(NotFoundError, match="no model named 'ghost'"):
            registry.resolve("ghost")
        registry.register("churn", make_artifact())
        calls: list[Callable[[], object]] = [
            lambda: registry.get("churn", 2),
            lambda: registry.resolve("churn@production"),
            lambda: registry.remove_alias("churn", "production"),
            lambda: registry.rollback("churn", "production"),
            lambda: registry.get_run("0" * 32),
            lambda: registry.register("churn", make_artifact(), run="f" * 32),
            lambda: registry.start_run("churn", parent_id="a" * 32),
            lambda: registry.set_tags("ghost", None, {"a": "b"}),
            lambda: registry.history("ghost"),
            lambda: registry.aliases("ghost"),
            lambda: registry.get_model("ghost"),
        ]
        for call in calls:
            with pytest.raises(NotFoundError):
                call()
        assert [v.version for v in registry.versions("churn")] == [1]

    def test_list_describes_every_model(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        assert registry.list() == []
        first = registry.register("fraud", make_artifact("fraud"))
        for _ in range(2):
            registry.register("churn", make_artifact())
        registry.set_alias("churn", "production", 1)
        registry.set_tags("churn", None, {"owner": "risk"})
        models = registry.list()
        assert [m.name for m in models] == ["churn", "fraud"]
        churn, fraud = models
        assert (churn.latest_version, churn.aliases, churn.tags) == (
            2,
            {"production": 1},
            {"owner": "risk"},
        )
        assert (fraud.latest_version, fraud.aliases, fraud.tags) == (1, {}, {})
        assert fraud.created_at == first.created_at
        assert registry.get_model("churn") == churn

    def test_tags_merge_and_none_deletes(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        registry.register("churn", make_artifact(), tags={"a": "1", "b": "2"})
        registry.set_tags("churn", 1, {"b": "3", "c": "4"})
        registry.set_tags("churn", 1, {"a": None})
        registry.set_tags("churn", None, {"owner": "risk"})
        assert registry.get("churn", 1).tags == {"b": "3", "c": "4"}
        assert registry.get_model("churn").tags == {"owner": "risk"}

    def test_archive_is_refused_while_an_alias_points_to_the_version(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        for _ in range(2):
            registry.register("churn", make_artifact())
        registry.set_alias("churn", "production", 2)
        with pytest.raises(RegistryError, match="'production' point to it"):
            registry.archive("churn", 2)
        assert registry.get("churn", 2).status == "active"
        registry.set_alias("churn", "production", 1)
        archived = registry.archive("churn", 2)
        assert archived.status == "archived"
        assert registry.resolve("churn").version == 1  # latest *active*
        assert registry.load("churn/2") is not None  # still loadable by number
        assert [v.version for v in registry.versions("churn", include_archived=False)] == [1]
        assert [v.version for v in registry.versions("churn")] == [1, 2]
        assert registry.get_model("churn").latest_version == 1
        assert not any(hasattr(registry, attr) for attr in ("delete", "delete_version"))

    def test_aliases_refuse_archived_versions_and_latest_skips_them(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        registry.register("churn", make_artifact())
        registry.archive("churn", 1)
        with pytest.raises(RegistryError, match="archived"):
            registry.set_alias("churn", "production", 1)
        with pytest.raises(NotFoundError, match="no active version"):
            registry.resolve("churn")
        assert registry.history("churn") == []

    # -- aliases -------------------------------------------------------------------------

    def test_alias_changes_are_recorded_as_events(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        for _ in range(3):
            registry.register("churn", make_artifact())
        created = registry.set_alias("churn", "production", 1, actor="ana", reason="first")
        moved = registry.set_alias("churn", "production", 3, actor="bo")
        registry.set_alias("churn", "staging", 2)
        removed = registry.remove_alias("churn", "production", reason="incident")
        assert (created.old_version, created.new_version, created.actor, created.reason) == (
            None,
            1,
            "ana",
            "first",
        )
        assert (moved.old_version, moved.new_version, moved.actor) == (1, 3, "bo")
        assert (removed.old_version, removed.new_version, removed.reason) == (3, None, "incident")
        assert registry.aliases("churn") == {"staging": 2}
        assert registry.history("churn", "production") == [created, moved, removed]
        assert [e.alias for e in registry.history("churn")] == [
            "production",
            "production",
            "staging",
            "production",
        ]
        assert [e.id for e in registry.history("churn")] == sorted(
            e.id for e in registry.history("churn")
        )

    def test_setting_an_alias_to_its_current_version_records_nothing(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        registry.register("churn", make_artifact())
        first = registry.set_alias("churn", "production", 1)
        again = registry.set_alias("churn", "production", 1, reason="no-op")
        assert again == first
        assert len(registry.history("churn", "production")) == 1

    def test_the_default_actor_comes_from_the_environment(
        self,
        registry: Registry,
        make_artifact: Callable[..., Artifact],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        registry.register("churn", make_artifact())
        monkeypatch.setenv("MODELKIT_ACTOR", "deploy-bot")
        assert registry.set_alias("churn", "production", 1).actor == "deploy-bot"
        monkeypatch.delenv("MODELKIT_ACTOR")
        assert "@" in registry.remove_alias("churn", "production").actor

    def test_history_answers_what_was_serving_at_any_time(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        for _ in range(3):
            registry.register("churn", make_artifact())
        for target in [1, 2, None, 3, 1]:
            if target is None:
                registry.remove_alias("churn", "production")
            else:
                registry.set_alias("churn", "production", target)
        events = registry.history("churn", "production")
        assert [e.new_version for e in events] == [1, 2, None, 3, 1]
        for before, after in itertools.pairwise(events):
            assert after.old_version == before.new_version
            assert after.at >= before.at
        tiny = timedelta(microseconds=1)
        probes = [events[0].at - tiny] + [e.at for e in events] + [e.at + tiny for e in events]
        for when in probes:
            assert registry.alias_at("churn", "production", when) == _expected_at(events, when)
        assert registry.alias_at("churn", "production", events[0].at - tiny) is None
        assert registry.alias_at("churn", "production", events[-1].at) == 1
        assert registry.alias_at("churn", "staging", events[-1].at) is None
        with pytest.raises(ValueError, match="timezone-aware"):
            registry.alias_at("churn", "production", events[0].at.replace(tzinfo=None))

    def test_rollback_moves_an_alias_back_and_says_so(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        for _ in range(3):
            registry.register("churn", make_artifact())
        registry.set_alias("churn", "production", 1)
        registry.set_alias("churn", "production", 3)
        back = registry.rollback("churn", "production", actor="oncall")
        assert (back.old_version, back.new_version, back.reason, back.actor) == (
            3,
            1,
            "rollback",
            "oncall",
        )
        assert registry.resolve("churn@production").version == 1
        again = registry.rollback("churn", "production", reason="false alarm")
        assert (again.old_version, again.new_version, again.reason) == (1, 3, "false alarm")
        registry.remove_alias("churn", "production")
        restored = registry.rollback("churn", "production")
        assert (restored.old_version, restored.new_version) == (None, 3)
        assert len(registry.history("churn", "production")) == 6

    def test_rollback_without_a_previous_target_is_refused(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        for _ in range(2):
            registry.register("churn", make_artifact())
        registry.set_alias("churn", "production", 1)
        with pytest.raises(RegistryError, match="no target before"):
            registry.rollback("churn", "production")
        registry.set_alias("churn", "production", 2)
        registry.set_alias("churn", "production", 1)
        registry.archive("churn", 2)
        with pytest.raises(RegistryError, match="archived"):
            registry.rollback("churn", "production")
        assert registry.aliases("churn") == {"production": 1}
        assert len(registry.history("churn")) == 3

    # -- runs ----------------------------------------------------------------------------

    def test_runs_record_params_metrics_scores_and_lineage(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        params = {"C": 1.0, "nested": {"a": [1, 2]}, "fn": len, "inf": math.inf}
        parent = registry.start_run(
            "churn", params=params, tags={"kind": "tune"}, dataset_fingerprint="sha256:abc"
        )
        assert parent.status == "running"
        assert parent.ended_at is None
        assert registry.get_run(parent.id) == parent
        children = [registry.start_run("churn", parent_id=parent.id[: 6 + i]) for i in range(3)]
        for child in children:
            registry.finish_run(
                child.id,
                metrics={"accuracy": 0.8},
                cv_scores={"accuracy": [0.7, 0.9]},
                fit_time=0.25,
            )
        version = registry.register("churn", make_artifact())
        done = registry.finish_run(
            parent.id[:8],
            metrics={"accuracy": 0.9, "auc": math.nan},
            cv_scores={"accuracy": [0.85, math.nan, 0.95]},
            fit_time=1.5,
            version=version.version,
        )
        assert done.status == "finished"
        assert done.ended_at is not None
        assert done.ended_at >= done.started_at
        assert done.params == {"C": 1.0, "nested": {"a": [1, 2]}, "fn": repr(len), "inf": "inf"}
        assert done.tags == {"kind": "tune"}
        assert done.dataset_fingerprint == "sha256:abc"
        assert done.metrics["accuracy"] == 0.9
        assert math.isnan(done.metrics["auc"])
        assert done.cv_scores["accuracy"][0] == 0.85
        assert math.isnan(done.cv_scores["accuracy"][1])
        assert (done.fit_time, done.version) == (1.5, version.version)
        assert registry.get("churn", version.version).run_id == parent.id
        assert [r.id for r in registry.runs(parent_id=parent.id)] == [c.id for c in children[::-1]]
        assert [r.id for r in registry.runs("churn", limit=2)] == [children[2].id, children[1].id]
        assert len(registry.runs()) == 4
        assert registry.runs("fraud") == []
        json.dumps(done.to_dict())

    def test_a_failed_run_keeps_its_error_and_a_run_finishes_once(self, registry: Registry) -> None:
        run = registry.start_run("churn")
        failed = registry.finish_run(run.id, status="failed", error="ValueError: bad input")
        assert (failed.status, failed.error) == ("failed", "ValueError: bad input")
        with pytest.raises(RegistryError, match="finishes once"):
            registry.finish_run(run.id)
        with pytest.raises(ValueError, match="status"):
            registry.finish_run(registry.start_run("churn").id, status="running")

    def test_run_prefixes_must_be_unique_and_long_enough(self, registry: Registry) -> None:
        run = registry.start_run("churn")
        assert registry.get_run(run.id[:6]) == run
        assert registry.get_run(run.id.upper()) == run
        with pytest.raises(NotFoundError, match="6\\+ characters"):
            registry.get_run(run.id[:5])
        with pytest.raises(NotFoundError):
            registry.get_run(run.id[:10] + "%")
        for suffix in ("1" * 26, "2" * 26):  # two runs sharing a prefix, through the backend
            registry.backend.insert_run(
                Run(id="abcdef" + suffix, name="churn", started_at=run.started_at)
            )
        with pytest.raises(RegistryError, match="matches several runs"):
            registry.get_run("abcdef")
        assert registry.get_run("abcdef1").id == "abcdef" + "1" * 26

    def test_finish_run_refuses_a_version_registered_from_another_run(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        first, second = registry.start_run("churn"), registry.start_run("churn")
        registry.register("churn", make_artifact(), run=first)
        with pytest.raises(RegistryError, match="registered from run"):
            registry.finish_run(second.id, version=1)
        assert registry.get_run(second.id).status == "running"  # nothing changed
        with pytest.raises(NotFoundError):
            registry.finish_run(second.id, version=2)

    # -- timestamps, records, persistence ------------------------------------------------

    def test_timestamps_are_utc_with_microseconds_and_round_trip(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        version = registry.register("churn", make_artifact())
        event = registry.set_alias("churn", "production", 1)
        run = registry.start_run("churn")
        for stamp, again in [
            (version.created_at, registry.get("churn", 1).created_at),
            (event.at, registry.history("churn")[0].at),
            (run.started_at, registry.get_run(run.id).started_at),
        ]:
            assert stamp == again
            assert again.utcoffset() == timedelta(0)
            assert str(again.tzinfo) == "UTC"
        assert version.to_dict()["created_at"].endswith("+00:00")
        assert len(version.to_dict()["created_at"]) == len("2024-01-01T00:00:00.000000+00:00")

    def test_records_convert_to_json(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        version = registry.register("churn", make_artifact(metrics={"auc": math.nan}))
        event = registry.set_alias("churn", "production", 1)
        records: list[Any] = [
            version,
            event,
            registry.get_model("churn"),
            registry.start_run("churn"),
        ]
        for record in records:
            data = json.loads(json.dumps(record.to_dict(), allow_nan=False))
            assert data["name"] == "churn"
        assert version.to_dict()["metrics"] == {"auc": None}

    def test_everything_persists_across_reopening(
        self,
        registry: Registry,
        registry_url: str,
        artifacts_url: str,
        make_artifact: Callable[..., Artifact],
    ) -> None:
        version = registry.register("churn", make_artifact(), tags={"a": "b"})
        event = registry.set_alias("churn", "production", 1)
        run = registry.start_run("churn")
        registry.close()
        with Registry(registry_url, artifacts=artifacts_url) as reopened:
            assert reopened.get("churn", 1) == version
            assert reopened.history("churn") == [event]
            assert reopened.get_run(run.id) == run
            assert reopened.register("churn", make_artifact()).version == 2

    # -- gc ------------------------------------------------------------------------------

    def test_gc_reclaims_unreferenced_entries_after_the_grace_period(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        kept = registry.register("churn", make_artifact())
        stray = make_artifact()
        assert stray.path is not None
        registry.store.put(stray.path, stray.manifest_sha256)  # as a killed register leaves it
        assert registry.gc(grace_seconds=3600) == []  # could be a register in flight
        assert registry.gc(grace_seconds=0, dry_run=True) == [stray.manifest_sha256]
        assert registry.store.exists(stray.manifest_sha256)
        assert registry.gc(grace_seconds=0) == [stray.manifest_sha256]
        assert not registry.store.exists(stray.manifest_sha256)
        assert registry.gc(grace_seconds=0) == []
        registry.load(kept.uri)  # referenced entries stay, archived or not
        registry.archive("churn", 1)
        assert registry.gc(grace_seconds=0) == []
        registry.load(kept.uri)

    def test_register_restores_an_artifact_gc_removed_after_it_was_stored(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        class RacingStore:
            """Delegates to the real store; right after the first put, a gc removes the entry."""

            def __init__(self, store: Any) -> None:
                self.store = store
                self.url = store.url
                self.puts = 0

            def put(self, src: Path, key: str) -> str:
                url: str = self.store.put(src, key)
                self.puts += 1
                if self.puts == 1:
                    assert registry.gc(grace_seconds=0) == [key]
                return url

            def __getattr__(self, attr: str) -> Any:
                return getattr(self.store, attr)

        racing = RacingStore(registry.store)
        registry.store = racing
        version = registry.register("churn", make_artifact())
        assert racing.puts == 2
        registry.load(version.uri)

    # -- predictions and feedback --------------------------------------------------------

    def test_feedback_attaches_labels_to_recorded_predictions(
        self, registry: Registry, registry_url: str, artifacts_url: str
    ) -> None:
        at = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
        one = PredictionRecord(id="p1", name="churn", version=3, at=at, rows=1, outputs=[1])
        three = PredictionRecord(
            id="p" * 200, name="churn", at=at + timedelta(seconds=1), rows=3, outputs=None
        )
        other = PredictionRecord(
            id="p3", name="fraud", version=1, at=at, rows=2, outputs=["a", "b"]
        )
        registry.record_predictions([one, three, other])
        assert registry.prediction("p1") == one
        assert registry.prediction("p" * 200) == three
        received = datetime(2024, 5, 2, tzinfo=timezone.utc)
        assert registry.add_feedback({"p1": 0, "p3": ["b", "b"]}, at=received) == 2
        later = received + timedelta(microseconds=1)
        assert registry.add_feedback({"p" * 200: [1, None, 2.5]}, at=later) == 1
        got = registry.feedback("churn")
        assert [f.prediction_id for f in got] == ["p1", "p" * 200]  # oldest label first
        first = got[0]
        assert (first.name, first.version, first.rows) == ("churn", 3, 1)
        assert (first.outputs, first.labels) == ([1], [0])
        assert first.predicted_at == at
        assert first.received_at == received
        assert str(first.received_at.tzinfo) == "UTC"
        assert (got[1].version, got[1].outputs, got[1].labels) == (None, None, [1, None, 2.5])
        assert got[1].received_at == later
        assert json.loads(json.dumps(first.to_dict()))["predicted_at"].endswith("+00:00")
        assert [f.labels for f in registry.feedback("fraud")] == [["b", "b"]]
        assert registry.feedback("nothing-here") == []
        registry.close()
        with Registry(registry_url, artifacts=artifacts_url) as reopened:
            assert reopened.feedback("churn") == got

    def test_recorded_input_rows_come_back_with_their_labels(self, registry: Registry) -> None:
        at = datetime(2024, 5, 1, tzinfo=timezone.utc)
        rows = [[0.5, "a", None], [1e-300, "é", 3]]
        record = PredictionRecord(
            id="with-inputs", name="churn", version=2, at=at, rows=2, outputs=[0, 1], inputs=rows
        )
        registry.record_predictions([record])
        assert registry.prediction("with-inputs") == record
        registry.add_feedback({"with-inputs": [1, 1]}, at=at + timedelta(hours=1))
        (got,) = registry.feedback("churn")
        assert (got.inputs, got.outputs, got.labels) == (rows, [0, 1], [1, 1])
        with pytest.raises(UsageError, match="2 row"):
            PredictionRecord(id="bad", name="churn", at=at, rows=2, inputs=[[1.0]])

    def test_recorded_rows_keep_every_float_bit_and_store_nan_as_null(
        self, registry: Registry
    ) -> None:
        at = datetime(2024, 5, 1, tzinfo=timezone.utc)
        floats = [5e-324, 1.7976931348623157e308, 0.1, 1 / 3, -2.5e-8, 123456789.0]
        draws = random.Random(3)  # noqa: S311 - test data, not secrets
        floats += [draws.gauss(0.0, 10.0 ** draws.randint(-30, 30)) for _ in range(30)]
        record = PredictionRecord(
            id="exact",
            name="churn",
            at=at,
            rows=len(floats),
            outputs=floats,
            inputs=[[value, 2**70, "x"] for value in floats],
        )
        registry.record_predictions([record])
        got = registry.prediction("exact")
        # JSONB gives large whole numbers back as integers: compared as the floats they read as
        assert [float(x).hex() for x in got.outputs or []] == [x.hex() for x in floats]
        inputs = got.inputs or []
        assert [float(row[0]).hex() for row in inputs] == [x.hex() for x in floats]
        assert [row[1:] for row in inputs] == [[2**70, "x"]] * len(floats)  # beyond 64 bits
        odd = PredictionRecord(
            id="odd",
            name="churn",
            at=at,
            rows=3,
            outputs=[math.nan, math.inf, 1.0],
            inputs=[[-math.inf], [math.nan], [0.5]],
        )
        registry.record_predictions([odd])
        got = registry.prediction("odd")
        assert (got.outputs, got.inputs) == ([None, None, 1.0], [[None], [None], [0.5]])

    def test_a_later_label_replaces_the_earlier_one_and_since_finds_it(
        self, registry: Registry
    ) -> None:
        at = datetime(2024, 5, 1, tzinfo=timezone.utc)
        registry.record_predictions(
            PredictionRecord(id=f"p{i}", name="churn", at=at, rows=1) for i in range(3)
        )
        day = timedelta(days=1)
        registry.add_feedback({"p0": 1, "p1": 1}, at=at + day)
        registry.add_feedback({"p2": 0}, at=at + 2 * day)
        registry.add_feedback({"p0": 0}, at=at + 3 * day)  # a correction
        assert [(f.prediction_id, f.labels) for f in registry.feedback("churn")] == [
            ("p1", [1]),
            ("p2", [0]),
            ("p0", [0]),
        ]
        since = registry.feedback("churn", since=at + 2 * day)
        assert [f.prediction_id for f in since] == ["p2", "p0"]
        window = registry.feedback("churn", since=at + day, until=at + 3 * day)
        assert [f.prediction_id for f in window] == ["p1", "p2"]
        assert [f.prediction_id for f in registry.feedback("churn", limit=1)] == ["p1"]
        with pytest.raises(UsageError):
            registry.feedback("churn", limit=-1)

    def test_feedback_is_all_or_nothing(self, registry: Registry) -> None:
        at = datetime(2024, 5, 1, tzinfo=timezone.utc)
        registry.record_predictions(
            [
                PredictionRecord(id="one", name="churn", at=at, rows=1),
                PredictionRecord(id="two", name="churn", at=at, rows=2),
            ]
        )
        with pytest.raises(NotFoundError, match=r"'ghost'.*'phantom'"):
            registry.add_feedback({"one": 1, "ghost": 1, "phantom": 0})
        with pytest.raises(UsageError, match="'two' has 2 row"):
            registry.add_feedback({"one": 1, "two": 1})
        with pytest.raises(UsageError, match="row 1"):
            registry.add_feedback({"two": [1, math.nan]})
        with pytest.raises(UsageError, match="row 0"):
            registry.add_feedback({"one": [{"nested": 1}]})
        with pytest.raises(UsageError, match="prediction id"):
            registry.add_feedback({"": 1})
        assert registry.feedback("churn") == []
        assert registry.add_feedback({}) == 0

    def test_a_recorded_prediction_id_keeps_its_first_record(self, registry: Registry) -> None:
        at = datetime(2024, 5, 1, tzinfo=timezone.utc)
        first = PredictionRecord(id="same", name="churn", version=1, at=at, rows=1)
        registry.record_predictions([first])
        registry.record_predictions(
            [
                PredictionRecord(id="same", name="fraud", version=2, at=at, rows=5),
                PredictionRecord(id="new", name="fraud", at=at, rows=5),
            ]
        )
        assert registry.prediction("same") == first
        assert registry.prediction("new").rows == 5
        with pytest.raises(NotFoundError, match="'missing'"):
            registry.prediction("missing")

    def test_prune_feedback_removes_old_predictions_and_their_labels(
        self, registry: Registry
    ) -> None:
        now = datetime.now(timezone.utc)
        registry.record_predictions(
            [
                PredictionRecord(id="old", name="churn", at=now - timedelta(days=40), rows=1),
                PredictionRecord(id="older", name="churn", at=now - timedelta(days=90), rows=1),
                PredictionRecord(id="recent", name="churn", at=now - timedelta(days=1), rows=1),
            ]
        )
        registry.add_feedback({"old": 1, "recent": 0})
        assert registry.prune_feedback(timedelta(days=30)) == 2
        assert [f.prediction_id for f in registry.feedback("churn")] == ["recent"]
        with pytest.raises(NotFoundError):
            registry.prediction("old")
        with pytest.raises(NotFoundError, match="'old'"):
            registry.add_feedback({"old": 1})
        assert registry.prune_feedback(timedelta(days=30)) == 0
        assert registry.prune_feedback(now) == 1
        with pytest.raises(UsageError):
            registry.prune_feedback(timedelta(days=-1))

    def test_concurrent_recorders_and_labellers_lose_nothing(self, registry: Registry) -> None:
        at = datetime(2024, 5, 1, tzinfo=timezone.utc)
        workers, each = 6, 20

        def work(i: int) -> None:
            for j in range(each):
                key = f"w{i}-{j}"
                registry.record_predictions([PredictionRecord(id=key, name="churn", at=at, rows=1)])
                registry.add_feedback({key: j})

        _run_together(workers, work)
        got = {f.prediction_id: f.labels for f in registry.feedback("churn")}
        assert got == {f"w{i}-{j}": [j] for i in range(workers) for j in range(each)}

    # -- monitoring alerts ---------------------------------------------------------------

    def test_alerts_are_stored_newest_first_and_survive_reopening(
        self, registry: Registry, registry_url: str, artifacts_url: str
    ) -> None:
        at = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
        details = {"verdict": "drift", "features": [{"name": "age", "p": 1e-9}], "n": 3}
        first = registry.record_alert("churn", "drift", details, version=2, at=at)
        second = registry.record_alert("churn", "performance", {"metric": "accuracy"}, at=at)
        other = registry.record_alert("fraud", "health", {"rule": "error_rate"})
        assert first.id is not None
        assert second.id is not None
        assert other.id is not None
        assert first.id < second.id < other.id
        assert (first.name, first.version, first.kind, first.at) == ("churn", 2, "drift", at)
        assert first.details == details
        assert registry.alerts("churn") == [second, first]
        assert registry.alerts(kind="health") == [other]
        assert registry.alerts("churn", kind="drift") == [first]
        assert registry.alerts(limit=1) == [other]
        assert registry.alerts(since=at + timedelta(seconds=1)) == [other]
        assert registry.alerts("churn", until=at + timedelta(microseconds=1)) == [second, first]
        assert registry.alerts("nothing-here") == []
        assert json.loads(json.dumps(first.to_dict()))["at"].endswith("+00:00")
        registry.close()
        with Registry(registry_url, artifacts=artifacts_url) as reopened:
            assert reopened.alerts() == [other, second, first]

    def test_invalid_alerts_are_refused(self, registry: Registry) -> None:
        with pytest.raises(UsageError):
            registry.record_alert("churn", "weather", {})
        with pytest.raises(UsageError):
            registry.record_alert("churn", "drift", {"p": math.nan})
        with pytest.raises(UsageError):
            registry.record_alert("", "drift", {})
        with pytest.raises(UsageError):
            registry.alerts(kind="weather")
        with pytest.raises(UsageError):
            registry.alerts(limit=-1)
        assert registry.alerts() == []

    # -- retraining decisions and leases -------------------------------------------------

    def test_retrain_events_keep_their_numbers_newest_first(
        self, registry: Registry, registry_url: str, artifacts_url: str
    ) -> None:
        at = datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=timezone.utc)
        gate = {"metric": "accuracy", "a": 0.71, "b": 0.93, "n": 400, "p_value": 1e-12}
        first = registry.record_retrain_event(
            "churn", "triggered", alias="production", champion=3, at=at,
            details={"reasons": [{"trigger": "drift", "alerts": 2}]},
        )  # fmt: skip
        second = registry.record_retrain_event(
            "churn", "promoted", alias="production", champion=3, challenger=4,
            actor="ops@host", reason="beat the champion", details={"gate": gate, "x": math.nan},
        )  # fmt: skip
        other = registry.record_retrain_event("fraud", "skipped", reason="cooldown")
        assert first.id is not None
        assert second.id is not None
        assert other.id is not None
        assert first.id < second.id < other.id
        assert (first.kind, first.champion, first.challenger, first.at) == (
            "triggered", 3, None, at,
        )  # fmt: skip
        assert second.details == {"gate": gate, "x": None}
        assert (second.actor, second.reason) == ("ops@host", "beat the champion")
        assert registry.retrain_events("churn") == [second, first]
        assert registry.retrain_events("churn", kind="promoted") == [second]
        assert registry.retrain_events(kind=["skipped", "triggered"]) == [other, first]
        assert registry.retrain_events(limit=1) == [other]
        assert registry.retrain_events("churn", since=at + timedelta(microseconds=1)) == [second]
        assert json.loads(json.dumps(second.to_dict()))["details"]["gate"] == gate
        registry.close()
        with Registry(registry_url, artifacts=artifacts_url) as reopened:
            assert reopened.retrain_events() == [other, second, first]

    def test_invalid_retrain_events_are_refused(self, registry: Registry) -> None:
        with pytest.raises(UsageError):
            registry.record_retrain_event("churn", "celebrated")
        with pytest.raises(UsageError):
            registry.record_retrain_event("churn", "promoted", challenger=0)
        with pytest.raises(UsageError):
            registry.record_retrain_event("churn", "promoted", details={"f": object()})
        with pytest.raises(UsageError):
            registry.retrain_events(kind="celebrated")
        assert registry.retrain_events() == []

    def test_a_lease_has_one_holder_until_released_or_expired(self, registry: Registry) -> None:
        first = registry.acquire_lease("churn", "host-a", seconds=60)
        assert first is not None
        assert first.holder == "host-a"
        assert registry.acquire_lease("churn", "host-b", seconds=60) is None
        assert registry.acquire_lease("fraud", "host-b", seconds=60) is not None
        renewed = registry.renew_lease("churn", "host-a", seconds=120)
        assert renewed.expires_at > first.expires_at
        stored = registry.lease("churn")
        assert stored is not None
        assert (stored.holder, stored.acquired_at) == ("host-a", first.acquired_at)
        with pytest.raises(RegistryError):
            registry.renew_lease("churn", "host-b", seconds=60)
        assert not registry.release_lease("churn", "host-b")
        assert registry.release_lease("churn", "host-a")
        assert registry.lease("churn") is None
        assert registry.acquire_lease("churn", "host-b", seconds=0.001) is not None
        lease = registry.lease("churn")
        assert lease is not None
        while not lease.expired():  # a lease of one millisecond
            pass
        assert registry.acquire_lease("churn", "host-c", seconds=60) is not None
        with pytest.raises(UsageError):
            registry.acquire_lease("churn", "host-c", seconds=0)

    def test_concurrent_lease_takers_get_one_lease(self, registry: Registry) -> None:
        workers = 8
        clones = [registry.reopen() for _ in range(workers)]
        try:
            got = _run_together(
                workers,
                lambda i: clones[i].acquire_lease("churn", f"worker-{i}", seconds=60),
            )
        finally:
            for clone in clones:
                clone.close()
        winners = [lease for lease in got if lease is not None]
        assert len(winners) == 1
        stored = registry.lease("churn")
        assert stored is not None
        assert stored.holder == winners[0].holder

    # -- concurrency (threads; see modelkit's integration tests for processes) -----------

    def test_concurrent_registers_get_consecutive_numbers(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        workers, each = 8, 3
        artifacts = [[make_artifact() for _ in range(each)] for _ in range(workers)]
        results = _run_together(
            workers, lambda i: [registry.register("churn", a).version for a in artifacts[i]]
        )
        numbers = sorted(n for got in results for n in got)
        assert numbers == list(range(1, workers * each + 1))
        for got in results:
            assert got == sorted(got)
        by_number = {v.version: v.artifact_sha256 for v in registry.versions("churn")}
        for i, got in enumerate(results):
            assert [by_number[n] for n in got] == [a.manifest_sha256 for a in artifacts[i]]

    def test_concurrent_alias_moves_keep_one_consistent_history(
        self, registry: Registry, make_artifact: Callable[..., Artifact]
    ) -> None:
        for _ in range(4):
            registry.register("churn", make_artifact())
        workers, moves = 6, 10

        def move(i: int) -> list[int]:
            return [
                registry.set_alias("churn", "production", (i + j) % 4 + 1).id for j in range(moves)
            ]

        returned = {e for got in _run_together(workers, move) for e in got}
        events = registry.history("churn", "production")
        assert {e.id for e in events} >= returned
        assert events[0].old_version is None
        for before, after in itertools.pairwise(events):
            assert after.old_version == before.new_version
            assert after.old_version != after.new_version
            assert after.at >= before.at
        assert registry.aliases("churn") == {"production": events[-1].new_version}
