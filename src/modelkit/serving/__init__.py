"""Online serving: one framework-neutral core, three wire protocols, WSGI and ASGI adapters.

:func:`wsgi_app` and :func:`asgi_app` build callables that serve one or several models
(in-process :class:`~modelkit.Model` objects or registry URIs such as ``"churn@production"``)
over the seed's ``POST /predict``, MLflow's ``POST /invocations`` and the Open Inference
Protocol (``/v2/...``, with binary tensor data), plus ``/healthz``, ``/readyz``, ``/metrics``
and ``/openapi.json``. :class:`App` is the core they share: it turns a :class:`Request` into
a :class:`Response`, and can be driven directly by other servers; it micro-batches
requests (:class:`BatchOptions`).

Importing this package loads neither a web framework nor scikit-learn.
"""

from modelkit.serving._http import DEFAULT_MAX_BODY_SIZE, HTTPError, ServingError
from modelkit.serving.asgi import ASGIApp, asgi_app
from modelkit.serving.batching import BatchOptions
from modelkit.serving.core import STATES, App, Request, Response, Route, ServedModel
from modelkit.serving.metrics import Metrics
from modelkit.serving.wsgi import WSGIApp, wsgi_app

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "STATES",
    "ASGIApp",
    "App",
    "BatchOptions",
    "HTTPError",
    "Metrics",
    "Request",
    "Response",
    "Route",
    "ServedModel",
    "ServingError",
    "WSGIApp",
    "asgi_app",
    "wsgi_app",
]
