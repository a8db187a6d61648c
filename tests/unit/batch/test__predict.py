"""One chunk: features assembled by name, bad rows found one column at a time, outputs named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from modelkit.batch._predict import Plan, output_column, predict_chunk
from modelkit.batch.sources import Chunk
from modelkit.exceptions import SignatureError
from modelkit.model import Model


@pytest.fixture(scope="module")
def categorical() -> Model:
    """A pipeline over a numeric feature and a color with three known levels."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"size": rng.normal(size=200), "color": rng.choice(["red", "green", "blue"], 200)}
    )
    y = (frame["size"] > 0).astype(int)
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["color"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, y)
    return Model.wrap(pipe, sample=frame, name="cat")


def chunk(start: int = 0) -> Chunk:
    columns = {
        "id": np.array(["a", "b", "c", "d"], dtype=object),
        "size": np.array([0.5, "x", None, 1.0], dtype=object),
        "color": np.array(["red", "mauve", "blue", None], dtype=object),
    }
    return Chunk(start, columns, 4)


def test_every_bad_row_gets_its_first_reason(categorical: Model) -> None:
    plan = Plan(
        model=categorical, key="id", on_error="quarantine", outputs=("predict", "decision_function")
    )
    output = predict_chunk(plan, chunk(start=10))
    assert output.columns["id"].tolist() == ["a"]
    assert set(output.columns) == {"id", "prediction", "decision"}
    assert output.quarantined is not None
    assert output.quarantined.rows.tolist() == [11, 12, 13]
    assert output.quarantined.reasons == [
        "feature 'size' must be numeric, got 'x'",
        "feature 'size' is missing",
        "feature 'color' is missing",
    ]
    assert '"color":"mauve"' in output.quarantined.data[0]


def test_unknown_levels_are_reasons_too(categorical: Model) -> None:
    columns = {"size": np.array([0.1, 0.2]), "color": np.array(["red", "mauve"], dtype=object)}
    output = predict_chunk(Plan(model=categorical, on_error="skip"), Chunk(0, columns, 2))
    assert (output.rows_out, output.rows_skipped) == (1, 1)
    assert output.columns["row"].tolist() == [0]
    with pytest.raises(SignatureError, match="mauve"):
        predict_chunk(Plan(model=categorical), Chunk(0, columns, 2))


def test_a_chunk_of_only_bad_rows_writes_nothing(categorical: Model) -> None:
    columns = {"size": np.array([np.inf]), "color": np.array(["red"], dtype=object)}
    output = predict_chunk(Plan(model=categorical, on_error="quarantine"), Chunk(5, columns, 1))
    assert output.rows_out == 0
    assert output.quarantined is not None
    assert output.quarantined.reasons == ["feature 'size' must be finite"]


def test_output_column_names_are_sql_friendly() -> None:
    assert output_column("proba", "yes, really") == "proba_yes_really"
    assert output_column("proba", 3) == "proba_3"
    assert output_column("proba", "---") == "proba_x"
