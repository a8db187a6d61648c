"""Helpers of the serving tests: a synchronous client over either adapter, error checks."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from modelkit.serving import ASGIApp, WSGIApp

BASE_URL = "http://modelkit.test"


class Client:
    """Synchronous requests through a WSGI or an ASGI callable."""

    def __init__(self, app: WSGIApp | ASGIApp) -> None:
        self.app = app
        self.kind = "wsgi" if isinstance(app, WSGIApp) else "asgi"

    @property
    def core(self) -> Any:
        """The served core :class:`~modelkit.serving.App`."""
        return self.app.app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request and return the complete response."""
        if isinstance(self.app, WSGIApp):
            transport = httpx.WSGITransport(app=self.app)
            with httpx.Client(transport=transport, base_url=BASE_URL) as client:
                return client.request(method, url, **kwargs)

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                response = await client.request(method, url, **kwargs)
                await response.aread()
                return response

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET ``url``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST to ``url``."""
        return self.request("POST", url, **kwargs)


def error_of(response: httpx.Response) -> str:
    """The message of a JSON error response (and check its shape)."""
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert set(document) == {"error"}, document
    assert isinstance(document["error"], str)
    assert document["error"]
    return str(document["error"])
