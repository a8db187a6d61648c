"""``modelkit train``, ``models``, ``runs`` and ``gc``, in process through ``modelkit.cli.main``.

Also the table rendering they share (``modelkit._tables``) and the ``plugins`` table built on it.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelkit._tables import cell, format_time, render_table
from modelkit.cli import main
from modelkit.default_plugins import train_command
from modelkit.default_plugins.registry_commands import (
    format_duration,
    format_param_value,
    parse_key_values,
    parse_param_value,
    parse_time,
)
from modelkit.exceptions import ModelkitError
from modelkit.plugins import make_plugin_manager, use_plugin_manager
from modelkit.registry import Registry

ESTIMATOR = "sklearn.linear_model:LogisticRegression"
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty registry directory chosen through $MODELKIT_HOME, and a fixed actor."""
    monkeypatch.setenv("MODELKIT_HOME", str(tmp_path / "registry"))
    monkeypatch.setenv("MODELKIT_ACTOR", "tester")
    return tmp_path / "registry"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``modelkit ARGS…`` in process; return (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def write_data(path: Path) -> Path:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 3))
    y = (X @ np.array([1.5, -2.0, 0.5]) + rng.normal(scale=0.5, size=200) > 0).astype(int)
    header = "age,income,tenure,churned"
    np.savetxt(
        path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.17g"
    )
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_data(tmp_path / "train.csv")


def train_args(data: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--target",
        "churned",
        "--estimator",
        ESTIMATOR,
        "--param",
        "solver=liblinear",
        "--name",
        "churn",
        "--cv",
        "3",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with churn/1 (production) and churn/2 (staging), trained by the command line
    once per module; tests get a copy (:func:`two_versions`)."""
    root = tmp_path_factory.mktemp("trained")
    data = write_data(root / "train.csv")
    home = root / "registry"
    with (
        pytest.MonkeyPatch.context() as patch,
        use_plugin_manager(make_plugin_manager(load_entrypoints=False)),
    ):
        patch.setenv("MODELKIT_ACTOR", "tester")
        registry = ["--registry", str(home)]
        assert main([*train_args(data, "--alias", "production"), *registry]) == 0
        assert main([*train_args(data, "--param", "C=0.5", "--alias", "staging"), *registry]) == 0
    return home


@pytest.fixture
def two_versions(trained: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A fresh copy of :func:`trained` as the registry $MODELKIT_HOME names."""
    shutil.copytree(trained, home)
    capsys.readouterr()
    return home


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# -- tables --------------------------------------------------------------------------------


def test_tables_align_columns_without_trailing_blanks() -> None:
    text = render_table(
        ("NAME", "LATEST", "TAGS"),
        [("churn", 12, {"team": "risk"}), ("fraud-detector", None, {})],
        align=("<", ">", "<"),
    )
    assert text.splitlines() == [
        "NAME            LATEST  TAGS",
        "churn               12  team=risk",
        "fraud-detector       -  -",
    ]


def test_a_right_aligned_last_column_is_padded() -> None:
    text = render_table(("A", "N"), [("x", 5), ("y", 100)], align=("<", ">"))
    assert text.splitlines() == ["A    N", "x    5", "y  100"]


def test_tables_refuse_rows_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="row 1 has 1 cells but the table has 2 columns"):
        render_table(("A", "B"), [("x", "y"), ("z",)])
    with pytest.raises(ValueError, match="align must give"):
        render_table(("A", "B"), [], align=("<",))


def test_cells_are_short_and_readable() -> None:
    paris = timezone(timedelta(hours=2))
    assert cell(datetime(2024, 6, 1, 14, 3, 4, 987654, tzinfo=paris)) == "2024-06-01T12:03:04Z"
    assert format_time(datetime(2024, 6, 1, 12, 3, 4)) == "2024-06-01T12:03:04Z"
    assert cell(0.912345678) == "0.9123"
    assert cell(float("nan")) == "nan"
    assert cell(None) == "-"
    assert cell(True) == "yes"
    assert cell(["production", "staging"]) == "production, staging"
    assert cell([]) == "-"
    assert cell({"accuracy": 0.9, "team": "risk"}) == "accuracy=0.9, team=risk"
    assert cell(3) == "3"


def test_the_plugins_table_is_unchanged(cli: Run) -> None:
    from modelkit.plugins import list_plugins

    rows = [
        (
            i.name,
            f"{i.distribution} {i.version}" if i.distribution else "(built-in)",
            ", ".join(i.hooks) or "-",
        )
        for i in list_plugins()
    ]
    headers = ("PLUGIN", "FROM", "HOOKS")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(2)]
    expected = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in [headers, *rows]]
    code, out, _ = cli("plugins")
    assert code == 0
    assert out.splitlines() == expected
    assert "modelkit.registry_commands  (built-in)" in out


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.5", 0.5),
        ("200", 200),
        ("null", None),
        ("[10,5]", [10, 5]),
        ("true", True),
        ('"1"', "1"),
        ("liblinear", "liblinear"),
        ("", ""),
        ("{'a': 1}", "{'a': 1}"),
    ],
)
def test_param_values_are_json_when_they_parse(text: str, value: Any) -> None:
    assert parse_param_value(text) == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(json_values)
def test_params_are_shown_as_they_would_be_typed(value: Any) -> None:
    assert parse_param_value(format_param_value(value)) == value


def test_key_values() -> None:
    assert parse_key_values(["a=1", "b = x=y", "c="], option="--tag") == {
        "a": "1",
        "b": " x=y",
        "c": "",
    }
    with pytest.raises(ModelkitError, match=r"--param 'solver' is not KEY=VALUE"):
        parse_key_values(["solver"], option="--param")
    with pytest.raises(ModelkitError, match=r"--tag '=x' is not KEY=VALUE"):
        parse_key_values(["=x"], option="--tag")
    with pytest.raises(ModelkitError, match=r"--tag 'a' is given twice"):
        parse_key_values(["a=1", "a=2"], option="--tag")


@pytest.mark.parametrize(
    "text",
    ["2024-06-01T12:00:00Z", "2024-06-01T14:00:00+02:00", "2024-06-01 12:00", "2024-06-01T12:00z"],
)
def test_times_are_utc_unless_an_offset_is_given(text: str) -> None:
    assert parse_time(text) == datetime(2024, 6, 1, 12, tzinfo=timezone.utc)


def test_a_bad_time_is_a_user_error() -> None:
    with pytest.raises(ModelkitError, match=r"--at 'yesterday' is not an ISO-8601 time"):
        parse_time("yesterday")


def test_durations() -> None:
    assert [format_duration(s) for s in (0.0421, 1.254, 12.34, 245, 7380)] == [
        "42ms",
        "1.25s",
        "12.3s",
        "4m05s",
        "2h03m",
    ]
    assert format_duration(None) is None


# -- train ---------------------------------------------------------------------------------


def test_train_registers_a_version_and_prints_run_version_and_metrics(
    home: Path, data: Path, cli: Run
) -> None:
    code, out, err = cli(*train_args(data, "--alias", "production", "--tag", "team=risk"))
    assert code == 0, err
    with Registry(home) as registry:
        (run,) = registry.runs("churn")
        version = registry.get("churn", 1)
        assert registry.aliases("churn") == {"production": 1}
    assert version.run_id == run.id
    assert version.tags == {"team": "risk"}
    fields = dict(line.split(None, 1) for line in out.split("\n\n")[0].splitlines())
    assert fields["run"] == run.id
    assert fields["version"] == "churn/1  (models:/churn/1)"
    assert fields["alias"] == "churn@production -> 1"
    assert fields["data"].endswith("train.csv: 200 rows x 3 features")
    assert fields["evaluation"] == "3-fold cross-validation"
    metrics = out.split("\n\n")[1].splitlines()
    assert metrics[0].split() == ["METRIC", "MEAN", "STD", "FOLDS"]
    table = {line.split()[0]: line.split()[1:] for line in metrics[1:]}
    assert set(table) == {"accuracy", "f1", "roc_auc"}
    for name, (mean, std, folds) in table.items():
        assert float(mean) == pytest.approx(run.metrics[name], abs=5e-5)
        assert float(std) == pytest.approx(np.std(run.cv_scores[name]), abs=5e-5)
        assert folds == "3"


def test_train_json_is_the_records(home: Path, data: Path, cli: Run) -> None:
    code, out, _ = cli(
        *train_args(data, "--metric", "accuracy,f1", "--metric", "log_loss", "--json")
    )
    assert code == 0
    result = json.loads(out)
    with Registry(home) as registry:
        assert result["run"] == registry.get_run(result["run"]["id"]).to_dict()
        assert result["version"] == registry.get("churn", 1).to_dict()
    assert list(result["metrics"]) == ["accuracy", "f1", "log_loss"]
    assert result["metrics"] == result["run"]["metrics"]
    assert result["alias"] is None


def test_params_reach_the_estimator_typed(home: Path, data: Path, cli: Run) -> None:
    code, _, err = cli(
        *train_args(
            data,
            "--param",
            "C=0.5",
            "--param",
            "max_iter=200",
            "--param",
            "class_weight=null",
            "--param",
            "tol=1e-3",
        )
    )
    assert code == 0, err
    with Registry(home) as registry:
        (run,) = registry.runs("churn")
        model = registry.load("churn/1")
    assert run.params["C"] == 0.5
    assert run.params["max_iter"] == 200
    assert run.params["class_weight"] is None
    assert run.params["solver"] == "liblinear"
    assert model.estimator.get_params()["tol"] == 1e-3


def test_a_dotted_estimator_path_imports_only_its_module(
    home: Path, data: Path, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported: list[str] = []
    real = train_command.importlib.import_module

    def spy(name: str, package: str | None = None) -> types.ModuleType:
        imported.append(name)
        return real(name, package)

    monkeypatch.setattr(train_command.importlib, "import_module", spy)
    args = ["max_depth=3" if a == "solver=liblinear" else a for a in train_args(data)]
    args[args.index(ESTIMATOR)] = "sklearn.tree.DecisionTreeClassifier"
    code, _, err = cli(*args[:-2], "--cv", "holdout")
    assert code == 0, err
    assert "sklearn.tree" in imported
    assert not any("DecisionTreeClassifier" in name for name in imported)
    with Registry(home) as registry:
        (run,) = registry.runs("churn")
    assert run.params["max_depth"] == 3
    assert all(len(scores) == 1 for scores in run.cv_scores.values())


def test_factories_take_keywords_and_nested_params_are_set_after(
    home: Path, data: Path, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def scaled(with_mean: bool = True) -> Any:
        return make_pipeline(StandardScaler(with_mean=with_mean), LogisticRegression())

    module = types.ModuleType("modelkit_cli_factories")
    module.scaled = scaled  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelkit_cli_factories", module)
    args = [a for a in train_args(data) if a not in {"solver=liblinear", "--param"}]
    args[args.index(ESTIMATOR)] = "modelkit_cli_factories:scaled"
    params = ["--param", "with_mean=false", "--param", "logisticregression__C=0.25"]
    code, _, err = cli(*args, *params, "--metric", "accuracy")
    assert code == 0, err
    with Registry(home) as registry:
        estimator = registry.load("churn/1").estimator
    assert estimator.get_params()["standardscaler__with_mean"] is False
    assert estimator.get_params()["logisticregression__C"] == 0.25


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {ESTIMATOR: "sklearn.linear_model:LogisticRegresion"},
            "'sklearn.linear_model' has no attribute 'LogisticRegresion' (did you mean "
            "'LogisticRegression'",
        ),
        (
            {ESTIMATOR: "sklearn.linear_modl.LogisticRegression"},
            "no module named 'sklearn.linear_modl' (did you mean 'linear_model'?)",
        ),
        ({ESTIMATOR: "no_such_package_x:Model"}, "no module named 'no_such_package_x'"),
        ({ESTIMATOR: "LogisticRegression"}, "must name a module and a class"),
        ({ESTIMATOR: "json:decoder.JSONDecodeError.nope"}, "'json.decoder.JSONDecodeError'"),
        ({ESTIMATOR: "math:pi"}, "'math:pi' is a float, not a class"),
        ({ESTIMATOR: "collections:OrderedDict"}, "made a OrderedDict, which has no fit method"),
        ({"solver=liblinear": "solver"}, "--param 'solver' is not KEY=VALUE"),
        (
            {"solver=liblinear": "solverr=liblinear"},
            "unknown parameter 'solverr' (did you mean 'solver'?)",
        ),
        ({"churned": "churn"}, "no target column 'churn' in train.csv (did you mean 'churned'?)"),
        ({"3": "1"}, None),  # usage error, checked below
        ({"churn": "bad name"}, "invalid model name 'bad name'"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    home: Path, data: Path, cli: Run, change: dict[str, str], message: str | None
) -> None:
    args = [change.get(a, a) for a in train_args(data)]
    code, out, err = cli(*args)
    if message is None:
        assert code == 2
        assert "argument --cv: expected a number of folds >= 2 or 'holdout', got '1'" in err
        return
    assert code == 1
    assert out == ""
    assert message in one_error_line(err)


def test_more_user_mistakes(home: Path, data: Path, cli: Run, tmp_path: Path) -> None:
    code, _, err = cli(*train_args(data, "--metric", "acuracy"))
    assert code == 1
    assert "unknown metric 'acuracy' (did you mean 'accuracy'" in one_error_line(err)
    code, _, err = cli(*train_args(tmp_path / "nope.csv"))
    assert code == 1
    assert "no such file" in one_error_line(err)
    code, _, err = cli(*train_args(data, "--param", "C=1", "--param", "C=2"))
    assert "--param 'C' is given twice" in one_error_line(err)
    with Registry(home) as registry:
        assert registry.runs() == []  # every mistake was caught before a run started


def test_a_failure_during_training_names_the_failed_run(home: Path, data: Path, cli: Run) -> None:
    args = ["solver=foo" if a == "solver=liblinear" else a for a in train_args(data)]
    code, _, err = cli(*args)
    assert code == 1
    line = one_error_line(err)
    with Registry(home) as registry:
        (run,) = registry.runs("churn")
    assert run.status == "failed"
    assert f"training failed (run {run.id} recorded as failed): " in line
    assert "'solver' parameter" in line


def test_usage_errors_exit_2(home: Path, cli: Run) -> None:
    assert cli("train", "--target", "y")[0] == 2
    assert cli("models")[0] == 2
    assert cli("models", "alias", "churn", "production", "two")[0] == 2
    assert cli("runs", "list", "--limit", "0")[0] == 2
    assert cli("gc", "--grace", "-1")[0] == 2
    assert cli("gc", "--grace", "soon")[0] == 2


# -- models --------------------------------------------------------------------------------


def test_models_list(two_versions: Path, cli: Run) -> None:
    code, out, _ = cli("models", "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "LATEST", "ALIASES", "CREATED", "TAGS"]
    assert row.split()[:4] == ["churn", "2", "production=1,", "staging=2"]
    code, out, _ = cli("models", "list", "--json")
    with Registry(two_versions) as registry:
        assert json.loads(out) == [m.to_dict() for m in registry.list()]


def test_an_empty_registry_says_so(home: Path, cli: Run) -> None:
    assert cli("models", "list")[1].startswith("no models in ")
    assert cli("models", "list", "--json")[1] == "[]\n"
    assert cli("runs", "list")[1] == "no runs recorded\n"


def test_registry_option_overrides_the_environment(two_versions, cli, tmp_path) -> None:
    other = tmp_path / "other"
    assert cli("models", "list", "--registry", str(other), "--json")[1] == "[]\n"
    assert json.loads(cli("models", "list", "--json")[1])[0]["name"] == "churn"


def test_models_show_a_model_and_its_versions(two_versions: Path, cli: Run) -> None:
    code, out, _ = cli("models", "show", "churn")
    assert code == 0
    fields, versions = out.split("\n\n")
    assert "aliases  production=1, staging=2" in fields.splitlines()
    lines = versions.splitlines()
    assert lines[0].split()[:4] == ["VERSION", "STATUS", "CREATED", "ALIASES"]
    assert [line.split()[:2] for line in lines[1:]] == [["1", "active"], ["2", "active"]]
    assert lines[1].split()[3] == "production"
    shown = json.loads(cli("models", "show", "churn", "--json")[1])
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert shown["aliases"] == {"production": 1, "staging": 2}


@pytest.mark.parametrize("uri", ["churn@staging", "churn/2", "models:/churn/2"])
def test_models_show_one_version(two_versions: Path, cli: Run, uri: str) -> None:
    code, out, _ = cli("models", "show", uri)
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.splitlines() if len(line.split()) > 1)
    assert fields["version"] == "models:/churn/2"
    assert fields["aliases"] == "staging"
    with Registry(two_versions) as registry:
        version = registry.get("churn", 2)
    assert fields["artifact"] == version.artifact_sha256
    assert json.loads(cli("models", "show", uri, "--json")[1]) == version.to_dict()


def test_models_versions_and_archive(two_versions: Path, cli: Run) -> None:
    code, _, err = cli("models", "archive", "churn", "1")
    assert code == 1
    assert "production" in one_error_line(err)
    assert cli("models", "unalias", "churn", "production")[0] == 0
    code, out, _ = cli("models", "archive", "churn", "1")
    assert (code, out) == (0, "archived churn/1; it stays loadable as models:/churn/1\n")
    rows = cli("models", "versions", "churn")[1].splitlines()[1:]
    assert [r.split()[:2] for r in rows] == [["1", "archived"], ["2", "active"]]
    rows = cli("models", "versions", "churn", "--active")[1].splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["2"]
    versions = json.loads(cli("models", "versions", "churn", "--json")[1])
    assert [v["status"] for v in versions] == ["archived", "active"]


def test_aliases_move_roll_back_and_are_logged(two_versions: Path, cli: Run) -> None:
    code, out, _ = cli("models", "alias", "churn", "production", "2", "--reason", "better f1")
    assert (code, out) == (0, "churn@production: 1 -> 2 (better f1)\n")
    out = cli("models", "alias", "churn", "production", "2")[1]
    assert out == "churn@production already points to 2; nothing changed\n"
    assert cli("models", "rollback", "churn", "production")[1] == (
        "churn@production: 2 -> 1 (rollback)\n"
    )
    event = json.loads(cli("models", "unalias", "churn", "staging", "--json")[1])
    assert (event["alias"], event["old_version"], event["new_version"]) == ("staging", 2, None)
    assert event["actor"] == "tester"
    with Registry(two_versions) as registry:
        assert registry.aliases("churn") == {"production": 1}
        events = registry.history("churn")
    assert json.loads(cli("models", "history", "churn", "--json")[1]) == [
        e.to_dict() for e in events
    ]
    lines = cli("models", "history", "churn", "production")[1].splitlines()
    assert lines[0].split() == ["AT", "ALIAS", "FROM", "TO", "ACTOR", "REASON"]
    assert [line.split()[1:5] for line in lines[1:]] == [
        ["production", "-", "1", "tester"],
        ["production", "1", "2", "tester"],
        ["production", "2", "1", "tester"],
    ]
    assert lines[2].endswith("better f1")


def test_history_at_a_time_shows_what_each_alias_pointed_to(two_versions, cli) -> None:
    cli("models", "alias", "churn", "production", "2")
    with Registry(two_versions) as registry:
        events = registry.history("churn")
    before_move = events[1].at + (events[2].at - events[1].at) / 2
    code, out, _ = cli("models", "history", "churn", "--at", before_move.isoformat())
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"aliases of churn at {format_time(before_move)}:"
    assert [line.split() for line in lines[1:]] == [
        ["ALIAS", "VERSION"],
        ["production", "1"],
        ["staging", "2"],
    ]
    state = json.loads(cli("models", "history", "churn", "--at", "2000-01-01", "--json")[1])
    assert state["aliases"] == {"production": None, "staging": None}
    now = datetime.now(timezone.utc).isoformat()
    state = json.loads(cli("models", "history", "churn", "production", "--at", now, "--json")[1])
    assert state["aliases"] == {"production": 2}
    code, _, err = cli("models", "history", "churn", "--at", "last week")
    assert code == 1
    assert "is not an ISO-8601 time" in one_error_line(err)


def test_tags_on_a_model_and_a_version(two_versions: Path, cli: Run) -> None:
    assert cli("models", "tag", "churn", "team=risk")[1] == "tags of churn: team=risk\n"
    assert cli("models", "tag", "churn", "2", "reviewed=yes", "by=ann")[1] == (
        "tags of churn/2: by=ann, reviewed=yes\n"
    )
    with Registry(two_versions) as registry:
        assert registry.get("churn", 2).tags == {"reviewed": "yes", "by": "ann"}
        assert registry.get("churn", 1).tags == {}
        assert registry.list()[0].tags == {"team": "risk"}
    record = json.loads(cli("models", "tag", "churn", "1", "x=1", "--json")[1])
    assert (record["version"], record["tags"]) == (1, {"x": "1"})
    code, _, err = cli("models", "tag", "churn", "2")
    assert code == 1
    assert "at least one KEY=VALUE" in one_error_line(err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("models", "show", "nope"), "no model named 'nope'"),
        (("models", "versions", "bad name"), "invalid model name 'bad name'"),
        (("models", "alias", "churn", "9", "1"), "invalid alias '9'"),
        (("models", "alias", "churn", "production", "7"), "no version 7"),
        (("models", "rollback", "churn", "nope"), "'nope'"),
        (("models", "show", "churn/x"), "invalid model URI"),
        (("models", "tag", "churn", "0", "a=b"), "a version is an integer >= 1, got 0"),
        (("runs", "show", "ffffffffff"), "no run"),
    ],
)
def test_registry_refusals_are_one_line_errors(two_versions, cli, argv, message) -> None:
    code, out, err = cli(*argv)
    assert code == 1
    assert out == ""
    assert message in one_error_line(err)


# -- runs and gc ---------------------------------------------------------------------------


def test_runs_list_and_show(two_versions: Path, cli: Run) -> None:
    with Registry(two_versions) as registry:
        runs = registry.runs()
    lines = cli("runs", "list")[1].splitlines()
    header = ["RUN", "NAME", "STATUS", "STARTED", "DURATION", "VERSION", "METRICS"]
    assert lines[0].split() == header
    assert [line.split()[0] for line in lines[1:]] == [r.id[:12] for r in runs]
    assert [line.split()[5] for line in lines[1:]] == ["2", "1"]
    assert len(cli("runs", "list", "--limit", "1")[1].splitlines()) == 2
    assert cli("runs", "list", "--name", "other")[1] == "no runs recorded for other\n"
    listed = json.loads(cli("runs", "list", "--name", "churn", "--json")[1])
    assert listed == [r.to_dict() for r in runs]

    code, out, _ = cli("runs", "show", runs[0].id[:8])
    assert code == 0
    fields, params, metrics = out.split("\n\n")
    assert fields.splitlines()[0] == f"run       {runs[0].id}"
    assert "version   churn/2" in fields.splitlines()
    assert "solver             liblinear" in params.splitlines()
    assert "C                  0.5" in params.splitlines()
    assert metrics.splitlines()[0].split() == ["METRIC", "MEAN", "STD", "FOLDS"]
    assert json.loads(cli("runs", "show", runs[0].id, "--json")[1]) == runs[0].to_dict()


def test_gc_removes_only_unreferenced_artifacts(two_versions: Path, cli: Run, tmp_path) -> None:
    from sklearn.dummy import DummyClassifier

    from modelkit import Artifact, Model

    model = Model.wrap(DummyClassifier().fit([[0.0], [1.0]], [0, 1]), sample=[[0.0]])
    artifact = Artifact.from_model(model, name="orphan", sample=[[0.0]])
    path = artifact.save(tmp_path / "orphan")
    with Registry(two_versions) as registry:
        registry.store.put(path, artifact.manifest_sha256)
        referenced = {v.artifact_sha256 for v in registry.versions("churn")}

    out = cli("gc")[1]
    assert out == "nothing to remove (unreferenced artifacts older than 3600s)\n"
    out = cli("gc", "--grace", "0", "--dry-run")[1]
    assert out == f"would remove 1 unreferenced artifact:\n  {artifact.manifest_sha256}\n"
    result = json.loads(cli("gc", "--grace", "0", "--json")[1])
    assert result == {"dry_run": False, "grace_seconds": 0.0, "removed": [artifact.manifest_sha256]}
    with Registry(two_versions) as registry:
        assert set(registry.store.keys()) == referenced
        assert registry.load("churn@production").predict(np.zeros((1, 3))).shape == (1,)


# -- corners -------------------------------------------------------------------------------


def test_holdout_output_and_a_model_without_aliases(home: Path, data: Path, cli: Run) -> None:
    code, out, _ = cli(*train_args(data)[:-2], "--cv", "holdout", "--test-size", "0.25")
    assert code == 0
    assert "evaluation  holdout split (0.25 for testing)" in out.splitlines()
    assert "alias" not in out.split("\n\n")[0]
    rows = out.split("\n\n")[1].splitlines()[1:]
    assert all(row.split()[2:] == ["-", "1"] for row in rows)  # no STD over a single split
    assert cli("models", "history", "churn")[1] == "no alias changes recorded for churn\n"
    assert cli("models", "history", "churn", "--at", "2030-01-01")[1] == (
        "churn has never had an alias\n"
    )
    assert cli("train", *train_args(data)[1:], "--test-size", "a fifth")[0] == 2


def test_a_failed_run_shows_its_error(home: Path, data: Path, cli: Run) -> None:
    args = ["solver=foo" if a == "solver=liblinear" else a for a in train_args(data)]
    cli(*args)
    with Registry(home) as registry:
        (run,) = registry.runs()
    out = cli("runs", "show", run.id)[1]
    assert "status    failed" in out.splitlines()
    assert "error     InvalidParameterError: " in out
    assert "METRIC" not in out
    row = cli("runs", "list")[1].splitlines()[1]
    assert row.split()[:3] == [run.id[:12], "churn", "failed"]


def test_estimators_whose_module_fails_to_import(home, data, cli, tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_models.py").write_text("raise RuntimeError('needs a GPU')\n")
    (tmp_path / "needs_dep.py").write_text("import not_installed_dependency_q\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec, message in [
        ("broken_models:Model", "importing 'broken_models' failed: RuntimeError: needs a GPU"),
        ("needs_dep:Model", "importing 'needs_dep' failed: No module named 'not_installed_"),
    ]:
        args = [spec if a == ESTIMATOR else a for a in train_args(data)]
        code, _, err = cli(*args)
        assert code == 1
        assert message in one_error_line(err)


def test_nested_params_the_estimator_does_not_have(home: Path, data: Path, cli: Run) -> None:
    code, _, err = cli(*train_args(data, "--param", "step__C=1"))
    assert code == 1
    assert "cannot set step__C on LogisticRegression: " in one_error_line(err)


def test_an_invalid_registry_url_is_a_user_error(home: Path, cli: Run) -> None:
    code, _, err = cli("models", "list", "--registry", "nosuchscheme://x")
    assert code == 1
    one_error_line(err)


def test_archive_json_and_no_active_versions(two_versions: Path, cli: Run) -> None:
    for alias in ("production", "staging"):
        cli("models", "unalias", "churn", alias)
    assert json.loads(cli("models", "archive", "churn", "1", "--json")[1])["status"] == "archived"
    cli("models", "archive", "churn", "2")
    assert cli("models", "versions", "churn", "--active")[1] == "churn has no active versions\n"


def test_train_without_pandas_reads_the_csv_with_numpy(home, data, cli, monkeypatch) -> None:
    from modelkit import _io

    monkeypatch.setattr(_io, "pandas_available", lambda: False)
    code, out, err = cli(*train_args(data))
    assert code == 0, err
    assert out.splitlines()[2].endswith("train.csv: 200 rows x 3 features")
    with Registry(home) as registry:
        model = registry.load("churn")
    assert model.predict(np.zeros((2, 3))).shape == (2,)
