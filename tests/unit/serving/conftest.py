"""Fixtures of the serving tests: fitted models, and clients over both adapters.

``client_for(app)`` sends requests through ``httpx.WSGITransport`` or
``httpx.ASGITransport`` (each ASGI request in a fresh event loop), so that one test body
checks both adapters; ``serve(*models, **options)`` builds the adapter under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.unit.serving.helpers import Client

from modelkit.model import Model
from modelkit.plugins import make_plugin_manager, use_plugin_manager
from modelkit.serving import asgi_app, wsgi_app

ADAPTERS = ("wsgi", "asgi")


@pytest.fixture(scope="session")
def seed_data() -> tuple[np.ndarray, np.ndarray]:
    """The seed article's data: make_classification(1000, 20 features, random_state=42)."""
    X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
    return X, y


@pytest.fixture(scope="session")
def seed_model(seed_data: tuple[np.ndarray, np.ndarray]) -> Model:
    """The seed article's LogisticRegression(solver='liblinear'), wrapped as "seed"."""
    X, y = seed_data
    with use_plugin_manager(make_plugin_manager(load_entrypoints=False)):
        return Model.wrap(LogisticRegression(solver="liblinear").fit(X, y), sample=X, name="seed")


@pytest.fixture(scope="session")
def reg_model() -> Model:
    """A Ridge regressor on 5 features (no predict_proba), named "reg"."""
    X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    with use_plugin_manager(make_plugin_manager(load_entrypoints=False)):
        return Model.wrap(Ridge().fit(X, y), sample=X, name="reg")


@pytest.fixture(scope="session")
def mixed_frame() -> pd.DataFrame:
    """Training rows with two numeric features and one categorical ("color")."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, 200).astype(float),
            "income": rng.normal(50.0, 10.0, 200),
            "color": rng.choice(["blue", "green", "red"], 200),
        }
    )


@pytest.fixture(scope="session")
def mixed_model(mixed_frame: pd.DataFrame) -> Model:
    """A DataFrame pipeline with a one-hot categorical feature, named "mixed"."""
    y = (mixed_frame["income"] > 50).to_numpy().astype(int)
    pipeline = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["color"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(mixed_frame, y)
    with use_plugin_manager(make_plugin_manager(load_entrypoints=False)):
        return Model.wrap(pipeline, sample=mixed_frame, name="mixed")


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    """ "wsgi" or "asgi": every test using it runs through both adapters."""
    return str(request.param)


@pytest.fixture
def serve(adapter: str) -> Callable[..., Client]:
    """Build the adapter under test around models: ``serve(model, other=model2, **options)``."""

    def build(*models: Any, **options: Any) -> Client:
        if adapter == "wsgi":
            return Client(wsgi_app(*models, **options))
        app = asgi_app(*models, **options)
        asyncio.run(app.startup())  # what the server's lifespan start-up does
        return Client(app)

    return build


@pytest.fixture
def client(serve: Callable[..., Client], seed_model: Model) -> Client:
    """The seed model served alone, through the adapter under test."""
    return serve(seed_model)
