"""The public surface of ``import modelkit``."""

from __future__ import annotations

import json
import subprocess
import sys

import modelkit


def test_all_is_sorted_and_complete() -> None:
    assert modelkit.__all__ == sorted(modelkit.__all__)
    public = {name for name in vars(modelkit) if not name.startswith("_")}
    submodules = {name for name in public if type(getattr(modelkit, name)).__name__ == "module"}
    assert public - submodules == set(modelkit.__all__) - {"__version__"}


def test_every_export_has_a_docstring() -> None:
    for name in modelkit.__all__:
        obj = getattr(modelkit, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"modelkit.{name} has no docstring"


def test_import_is_light() -> None:
    """``import modelkit`` loads no scikit-learn, scipy, pandas, joblib or plugin module."""
    code = (
        "import json, sys; import modelkit; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'sklearn', 'scipy', 'pandas', 'joblib'} "
        "or m.startswith('modelkit.default_plugins'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
