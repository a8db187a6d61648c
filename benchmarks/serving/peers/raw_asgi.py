"""A hand-written ASGI app serving the seed's ``POST /predict``: the floor of an ASGI adapter.

No framework, no validation beyond the seed's own check, no batching, no metrics: it reads the
body, parses the JSON, calls ``estimator.predict`` on the event loop and answers
``{"prediction": [...]}``. Whatever a real adapter costs on top of this is its overhead.

Run: ``RAW_ASGI_MODEL=model.joblib uvicorn --app-dir peers raw_asgi:app``; the estimator is
loaded at the lifespan start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_state: dict[str, Any] = {}
_JSON = [(b"content-type", b"application/json")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI callable: lifespan start-up loads the estimator; HTTP answers predictions."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            import joblib

            _state["estimator"] = joblib.load(os.environ["RAW_ASGI_MODEL"])
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["method"] != "POST" or scope["path"] != "/predict":
        await _answer(send, 404, {"error": "not found"})
        return
    body = await _read_body(receive)
    try:
        features = json.loads(body).get("features")
    except (ValueError, AttributeError):
        features = None
    if not isinstance(features, list):
        await _answer(send, 400, {"error": 'Missing or invalid "features" key'})
        return
    try:
        prediction = _state["estimator"].predict(features)
    except Exception as exc:
        await _answer(send, 400, {"error": str(exc)})
        return
    await _answer(send, 200, {"prediction": prediction.tolist()})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Send, status: int, payload: object) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
