"""The ``api_key`` authenticator: ``Authorization: Bearer <key>`` against configured keys.

Keys come from the environment, read when an application is built:

``MODELKIT_API_KEYS``
    A comma list of keys.
``MODELKIT_API_KEYS_FILE``
    A file with one key per line; blank lines and lines starting with ``#`` are skipped. A
    line ``sha256:<64 hex digits>`` gives the digest of a key instead of the key itself, so
    the file need not hold secrets.

Both may be set (the keys are pooled). A variable that is set but holds no key, a missing
file, or a key shorter than :data:`MIN_KEY_LENGTH` characters stops the application from
starting: a server meant to be protected never runs open by mistake. Only the sha256 digests
of the keys are kept in memory; a presented key is hashed and compared with every digest
with :func:`hmac.compare_digest`, without stopping at a match, so the time taken does not
depend on which key matched or how much of one did. The identity of an accepted request is
``key:`` and the first 8 hex digits of its key's digest (safe to log). Generate a key with::

    python -c "import secrets; print(secrets.token_urlsafe(32))"
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from modelkit.exceptions import ServingError
from modelkit.hookspecs import hookimpl
from modelkit.serving._http import HTTPError
from modelkit.serving.auth import Identity, bearer_token

if TYPE_CHECKING:
    from modelkit.serving.auth import AuthenticatorFactory
    from modelkit.serving.core import Request

__all__ = [
    "KEYS_ENV",
    "KEYS_FILE_ENV",
    "MIN_KEY_LENGTH",
    "APIKeyAuthenticator",
    "from_environment",
    "register_authenticators",
]

KEYS_ENV = "MODELKIT_API_KEYS"
KEYS_FILE_ENV = "MODELKIT_API_KEYS_FILE"
MIN_KEY_LENGTH = 16
"""Shortest key accepted, in characters."""

_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_KEY = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what fits in a Bearer header


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class APIKeyAuthenticator:
    """Accepts requests whose ``Authorization: Bearer <key>`` is one of the configured keys.

    ``keys`` are the keys themselves; ``digests`` sha256 digests of keys (32 bytes, or 64
    hex digits), for keys kept out of the process's configuration. Raises
    :class:`~modelkit.exceptions.ServingError` when there is no key, or a key is too short
    or holds characters a header cannot carry.
    """

    def __init__(
        self,
        keys: Iterable[str] = (),
        *,
        digests: Iterable[bytes | str] = (),
        realm: str = "modelkit",
    ) -> None:
        """Keep the digests of ``keys`` and the given ``digests``."""
        found: list[bytes] = []
        for number, key in enumerate(keys, 1):
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise ServingError(
                    f"API key #{number} must be visible ASCII characters without spaces or "
                    "commas (what an Authorization header can carry)"
                )
            if len(key) < MIN_KEY_LENGTH:
                raise ServingError(
                    f"API key #{number} has {len(key)} characters; use at least "
                    f'{MIN_KEY_LENGTH} (generate one with: python -c "import secrets; '
                    'print(secrets.token_urlsafe(32))")'
                )
            found.append(_digest(key))
        for digest in digests:
            try:
                raw = bytes.fromhex(digest) if isinstance(digest, str) else bytes(digest)
            except (TypeError, ValueError) as exc:
                raise ServingError(
                    f"an API key digest is 32 bytes or 64 hex digits, got {digest!r}"
                ) from exc
            if len(raw) != hashlib.sha256().digest_size:
                raise ServingError(f"an API key digest is a sha256 (32 bytes), got {len(raw)}")
            found.append(raw)
        if not found:
            raise ServingError("an APIKeyAuthenticator needs at least one key")
        self._digests = tuple(dict.fromkeys(found))
        self.realm = realm
        self.challenge = f'Bearer realm="{realm}"'

    def __repr__(self) -> str:
        """``APIKeyAuthenticator(3 keys)``: never the keys."""
        return f"APIKeyAuthenticator({len(self._digests)} keys)"

    def authenticate(self, request: Request) -> Identity | None:
        """The key's identity; ``None`` without a Bearer header; a 401 for a wrong key."""
        token = bearer_token(request, self.realm)
        if token is None:
            return None
        presented = _digest(token)
        match = b""
        for digest in self._digests:  # every digest, every time: no early exit
            if hmac.compare_digest(presented, digest):
                match = digest
        if not match:
            raise HTTPError(
                401,
                "the API key in the Authorization header is not valid",
                headers=[("www-authenticate", f'{self.challenge}, error="invalid_token"')],
            )
        return Identity(principal=f"key:{match.hex()[:8]}", method="api_key")


def _file_entries(path: Path) -> tuple[list[str], list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServingError(
            f"{KEYS_FILE_ENV} names {str(path)!r}, which cannot be read ({exc}); give a "
            "readable file with one API key per line"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ServingError(f"{KEYS_FILE_ENV} file {str(path)!r} is not UTF-8 text") from exc
    keys: list[str] = []
    digests: list[str] = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        hashed = _DIGEST.fullmatch(entry)
        if hashed:
            digests.append(hashed.group(1))
        else:
            keys.append(entry)
    return keys, digests


def from_environment(environ: Mapping[str, str]) -> APIKeyAuthenticator | None:
    """The authenticator ``MODELKIT_API_KEYS`` / ``MODELKIT_API_KEYS_FILE`` configure, or
    ``None`` when neither is set."""
    listed = environ.get(KEYS_ENV)
    filename = environ.get(KEYS_FILE_ENV)
    if listed is None and filename is None:
        return None
    keys: list[str] = []
    digests: list[str] = []
    if listed is not None:
        keys += [key.strip() for key in listed.split(",") if key.strip()]
        if not keys:
            raise ServingError(
                f"{KEYS_ENV} is set but holds no key; give a comma list of keys, or unset it "
                "to serve without API keys"
            )
    if filename is not None:
        more_keys, more_digests = _file_entries(Path(filename))
        if not more_keys and not more_digests:
            raise ServingError(
                f"{KEYS_FILE_ENV} file {filename!r} holds no key; put one key (or "
                "sha256:<hex digest>) per line"
            )
        keys += more_keys
        digests += more_digests
    return APIKeyAuthenticator(keys, digests=digests)


@hookimpl
def register_authenticators(register: Callable[[str, AuthenticatorFactory], None]) -> None:
    """Register ``api_key``, configured by ``MODELKIT_API_KEYS`` / ``MODELKIT_API_KEYS_FILE``."""
    register("api_key", from_environment)
