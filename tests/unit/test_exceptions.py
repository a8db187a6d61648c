"""The exception tree: every error is a ModelkitError and the builtin a caller would catch."""

from __future__ import annotations

import pytest

from modelkit import exceptions as exc


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (exc.SignatureError, ValueError),
        (exc.ArtifactFormatError, ValueError),
        (exc.NotFoundError, LookupError),
        (exc.ArtifactIntegrityError, exc.ArtifactError),
        (exc.PluginError, exc.ModelkitError),
        (exc.DataError, ValueError),
        (exc.ArtifactExistsError, FileExistsError),
        (exc.VersionMismatchError, exc.ArtifactError),
        (exc.RetrainVetoError, exc.ModelkitError),
    ],
)
def test_errors_are_catchable_as_the_builtin(
    error: type[Exception], builtin: type[Exception]
) -> None:
    with pytest.raises(builtin):
        raise error("boom")
    assert issubclass(error, exc.ModelkitError)


@pytest.mark.parametrize("warning", [exc.HookFailedWarning, exc.VersionMismatchWarning])
def test_warnings_are_modelkit_warnings(warning: type[Warning]) -> None:
    assert issubclass(warning, exc.ModelkitWarning)
    assert issubclass(warning, UserWarning)


def test_the_docstring_draws_every_class() -> None:
    doc = exc.__doc__ or ""
    for name in exc.__all__:
        assert name in doc, f"{name} is missing from the tree in the module docstring"
