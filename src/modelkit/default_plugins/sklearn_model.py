"""The built-in ``make_model``: wrap anything with a scikit-learn style ``predict``.

It runs last, so a plugin that knows better about some kind of object wraps it first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.model import Model
    from modelkit.signature import Signature


@hookimpl(trylast=True)
def make_model(obj: Any, signature: Signature | None, sample: Any) -> Model | None:
    """Wrap ``obj`` when it has a callable ``predict``; otherwise let other plugins try.

    Without a ``signature``, infers one from ``sample`` (with the estimator's fitted
    attributes), or from the fitted attributes alone (``n_features_in_``,
    ``feature_names_in_``) when there is no sample.
    """
    if not callable(getattr(obj, "predict", None)):
        return None
    from modelkit.model import Model
    from modelkit.signature import Signature

    if signature is None:
        if sample is None:
            signature = Signature.from_estimator(obj)
        else:
            signature = Signature.infer(sample, estimator=obj)
    return Model(obj, signature)
