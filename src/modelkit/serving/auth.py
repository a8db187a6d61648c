"""Authentication of served requests: the contract plugins implement, and how apps pick them.

An :class:`Authenticator` looks at a :class:`~modelkit.serving.Request` and says who sent it
(an :class:`Identity`), or that it carries no credentials it understands (``None``), or
refuses it by raising a 401 :class:`~modelkit.serving.HTTPError`. Authenticators come from
plugins implementing the ``register_authenticators`` hook; modelkit's own, ``api_key``,
checks ``Authorization: Bearer <key>`` against keys from ``MODELKIT_API_KEYS`` or
``MODELKIT_API_KEYS_FILE`` (see :mod:`modelkit.default_plugins.api_key_auth`).

The ``auth`` option of :class:`~modelkit.serving.App`, ``wsgi_app`` and ``asgi_app``:

``None`` (default)
    Every registered authenticator that finds its configuration in the environment is
    enabled; with none configured, requests are not authenticated.
``True``
    The same, but at least one must be configured (the application refuses to start
    otherwise): for deployments that must never run open by mistake.
``False``
    No authentication, whatever the environment says.
a name, an :class:`Authenticator`, or a list of them
    Exactly those; a named one must be configured.

With several authenticators a request is accepted when any of them accepts it. Routes in
``public_routes`` (by default the health, readiness and metrics routes, see
:data:`PUBLIC_ROUTES`) are answered without authentication; ``MODELKIT_PUBLIC_ROUTES``
(a comma list of route templates, empty for none) overrides the default. Every other route,
``/openapi.json`` included, answers 401 ``{"error": …}`` with a ``WWW-Authenticate``
challenge per authenticator when no authenticator accepts the request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import attrs

from modelkit.exceptions import ServingError
from modelkit.serving._http import HTTPError

if TYPE_CHECKING:
    from modelkit.serving.core import Request

__all__ = [
    "PUBLIC_ROUTES",
    "PUBLIC_ROUTES_ENV",
    "AuthOption",
    "Authentication",
    "Authenticator",
    "AuthenticatorFactory",
    "Identity",
    "bearer_token",
    "build_authentication",
    "public_routes",
]

PUBLIC_ROUTES: tuple[str, ...] = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/ping",
    "/health",
    "/v2/health/live",
    "/v2/health/ready",
)
"""Route templates answered without authentication by default: health, readiness, metrics."""

PUBLIC_ROUTES_ENV = "MODELKIT_PUBLIC_ROUTES"
"""Comma list of route templates that skip authentication (empty: none), overriding
:data:`PUBLIC_ROUTES` when ``public_routes`` is not given."""


@attrs.frozen
class Identity:
    """Who sent a request, as an authenticator established it.

    ``principal`` names the client without revealing a secret (``"key:1f2e3d4c"`` for an API
    key: the start of its sha256); ``method`` the authenticator (``"api_key"``); ``claims``
    anything else it learned (token scopes, a certificate subject…).
    """

    principal: str
    method: str
    claims: Mapping[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class Authenticator(Protocol):
    """Decides who sent a request. Implement it to add OAuth, mTLS, signed requests…

    ``challenge`` is the ``WWW-Authenticate`` value of a 401 answer
    (``'Bearer realm="modelkit"'``). :meth:`authenticate` must be fast and thread-safe:
    it runs on every protected request, in the server's worker threads.
    """

    challenge: str

    def authenticate(self, request: Request) -> Identity | None:
        """Return the request's :class:`Identity`, or ``None`` when it carries no credentials
        this authenticator understands.

        Raise ``HTTPError(401, message)`` for credentials it understands but refuses (a wrong
        key, an expired token); its headers replace the challenges of the answer.
        """


AuthenticatorFactory: TypeAlias = Callable[[Mapping[str, str]], "Authenticator | None"]
"""What ``register_authenticators`` plugins register: ``factory(environ)`` returns a
configured :class:`Authenticator`, or ``None`` when ``environ`` does not configure it."""

AuthOption: TypeAlias = "bool | str | Authenticator | Sequence[str | Authenticator] | None"
"""The type of the ``auth`` option (see the module docstring)."""


def bearer_token(request: Request, realm: str = "modelkit") -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None`` without one.

    An Authorization header of another scheme is ``None`` too (another authenticator may
    understand it); a Bearer header without a usable token is a 401 naming the problem.
    """
    raw = request.headers.get("authorization")
    if raw is None:
        return None
    scheme, _, token = raw.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise HTTPError(
            401,
            "malformed Authorization header: expected 'Bearer <token>' with one token",
            headers=[("www-authenticate", f'Bearer realm="{realm}", error="invalid_request"')],
        )
    return token


@attrs.frozen
class Authentication:
    """The authenticators of one application and the routes they leave open.

    :meth:`check` accepts a request that any authenticator accepts; otherwise it raises a
    401 :class:`~modelkit.serving.HTTPError` carrying a challenge per authenticator.
    """

    authenticators: tuple[Authenticator, ...]
    public: frozenset[str] = frozenset(PUBLIC_ROUTES)

    @property
    def enabled(self) -> bool:
        """Whether any request is authenticated at all."""
        return bool(self.authenticators)

    def protects(self, template: str) -> bool:
        """Whether the route ``template`` needs authentication."""
        return self.enabled and template not in self.public

    def check(self, request: Request) -> Identity:
        """The identity of ``request``, or a 401 explaining what is missing or wrong."""
        refused: HTTPError | None = None
        for authenticator in self.authenticators:
            try:
                identity = authenticator.authenticate(request)
            except HTTPError as exc:
                if exc.status != 401:
                    raise
                refused = refused or exc
                continue
            if identity is not None:
                return identity
        challenges = [("www-authenticate", a.challenge) for a in self.authenticators]
        if refused is not None:
            raise HTTPError(401, refused.message, headers=refused.headers or challenges)
        raise HTTPError(
            401,
            "this server requires authentication: send an Authorization header "
            f"({'; or '.join(a.challenge for a in self.authenticators)})",
            headers=challenges,
        )


def public_routes(
    given: Iterable[str] | None, known: Iterable[str], environ: Mapping[str, str]
) -> frozenset[str]:
    """The route templates left open: ``given``, else ``$MODELKIT_PUBLIC_ROUTES``, else the
    default; each must be a route of the application."""
    if given is None:
        raw = environ.get(PUBLIC_ROUTES_ENV)
        given = PUBLIC_ROUTES if raw is None else [p.strip() for p in raw.split(",") if p.strip()]
    elif isinstance(given, str):
        raise ServingError(f"public_routes is a list of route templates, got the string {given!r}")
    chosen = frozenset(given)
    templates = set(known)
    unknown = sorted(chosen - templates)
    if unknown:
        raise ServingError(
            f"public_routes names unknown routes {unknown}; use route templates such as "
            f"'/healthz' or '/v2/models/{{name}}/ready' (routes: {sorted(templates)})"
        )
    return chosen


def build_authentication(
    auth: AuthOption,
    *,
    public: Iterable[str] | None,
    known_routes: Iterable[str],
    environ: Mapping[str, str] | None = None,
) -> Authentication:
    """Resolve the ``auth`` option into the authenticators an application uses.

    Registered factories are looked up through the ``register_authenticators`` hook. A
    named or required authenticator that is not configured, or an object that is not an
    :class:`Authenticator`, is a :class:`~modelkit.exceptions.ServingError`.
    """
    env = os.environ if environ is None else environ
    chosen = _authenticators(auth, env)
    return Authentication(chosen, public_routes(public, known_routes, env))


def _authenticators(auth: AuthOption, env: Mapping[str, str]) -> tuple[Authenticator, ...]:
    if auth is False:
        return ()
    if auth is None or auth is True:
        factories = _factories()
        found = [a for a in (factory(env) for factory in factories.values()) if a is not None]
        if auth is True and not found:
            raise ServingError(
                "auth=True but no authenticator is configured: set MODELKIT_API_KEYS (a comma "
                "list of keys) or MODELKIT_API_KEYS_FILE (one key per line), or configure "
                f"another authenticator plugin (registered: {sorted(factories) or 'none'})"
            )
        return tuple(_check(a) for a in found)
    items = [auth] if isinstance(auth, str) or not isinstance(auth, Sequence) else list(auth)
    if not items:
        raise ServingError("auth=[] selects no authenticator; use auth=False to turn it off")
    out: list[Authenticator] = []
    factories = _factories() if any(isinstance(i, str) for i in items) else {}
    for item in items:
        if isinstance(item, str):
            factory = factories.get(item)
            if factory is None:
                raise ServingError(
                    f"no authenticator named {item!r} is registered "
                    f"(registered: {sorted(factories) or 'none'})"
                )
            built = factory(env)
            if built is None:
                raise ServingError(
                    f"authenticator {item!r} is not configured; see its documentation "
                    "(api_key: set MODELKIT_API_KEYS or MODELKIT_API_KEYS_FILE)"
                )
            out.append(_check(built))
        else:
            out.append(_check(item))
    return tuple(out)


def _factories() -> dict[str, AuthenticatorFactory]:
    from modelkit.plugins import collect

    return collect("register_authenticators")


def _check(value: object) -> Authenticator:
    if not isinstance(value, Authenticator) or not isinstance(
        getattr(value, "challenge", None), str
    ):
        raise ServingError(
            f"an authenticator needs a 'challenge' string and an authenticate(request) method; "
            f"got {type(value).__name__}"
        )
    return value
