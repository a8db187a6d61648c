"""Artifact stores: where artifact directories are kept, addressed by key.

A store holds complete, verified artifact directories under string keys. modelkit's registry
uses content addressing (key = the artifact's manifest sha256), so a key names exactly one
content and a repeated ``put`` is a no-op.

Stores are plugins: a plugin registers a factory per URL scheme through the
``register_artifact_stores`` hook, and :func:`open_store` picks one by the URL's scheme. The
built-in ``file`` store (plain paths and ``file://`` URLs) is
:class:`modelkit.default_plugins.local_store.LocalArtifactStore`.

A store moves bytes; it does not vouch for them. Load from a store with the expected manifest
hash::

    store = open_store("/srv/modelkit/artifacts")
    key = artifact.manifest_sha256
    store.put(artifact.path, key)
    loaded = Artifact.load(store.get(key), expected_manifest_sha256=key)
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit

from modelkit.exceptions import NotFoundError, PluginError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["ArtifactStore", "open_store", "url_scheme"]


@runtime_checkable
class ArtifactStore(Protocol):
    """Keeps artifact directories under string keys.

    Implementations must make :meth:`put` atomic (a reader never sees a partial artifact under
    a key) and idempotent (putting the same content under an existing key succeeds and changes
    nothing). Keys are ``[A-Za-z0-9][A-Za-z0-9._-]*``; a store may refuse others with
    :class:`ValueError`.
    """

    @property
    def url(self) -> str:
        """The URL this store was opened from, normalised (e.g. ``file:///srv/artifacts``)."""
        ...

    def put(self, src: Path, key: str) -> str:
        """Copy the complete artifact directory ``src`` in under ``key``; return its URL.

        ``src`` is verified first (:func:`modelkit.artifact.verify`); an invalid one raises
        the error that verification raised and stores nothing. An existing ``key`` holding the
        same content is left as is; one holding different content is an
        :class:`~modelkit.exceptions.ArtifactError`.
        """
        ...

    def get(self, key: str) -> Path:
        """Return a local directory holding the artifact stored under ``key``.

        Raises :class:`~modelkit.exceptions.NotFoundError` for an unknown key. The directory
        is not verified here: load it with :meth:`modelkit.Artifact.load`.
        """
        ...

    def exists(self, key: str) -> bool:
        """Tell whether an artifact is stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the artifact stored under ``key`` (NotFoundError if there is none)."""
        ...

    def keys(self) -> Iterator[str]:
        """Iterate over the stored keys (complete artifacts only), in sorted order."""
        ...


def url_scheme(url: str | os.PathLike[str]) -> str:
    """Return the scheme a store URL uses; plain paths (and Windows drive paths) are ``file``."""
    text = os.fspath(url)
    scheme = urlsplit(text).scheme.lower()
    if not scheme or (sys.platform == "win32" and len(scheme) == 1):
        return "file"
    return scheme


def open_store(url: str | os.PathLike[str]) -> ArtifactStore:
    """Open the artifact store at ``url``, using the plugin registered for its scheme.

    Plain paths and ``file://`` URLs open the built-in local store; other schemes need a
    plugin implementing ``register_artifact_stores``. An unknown scheme raises
    :class:`~modelkit.exceptions.NotFoundError` listing the known ones.
    """
    from modelkit.plugins import collect

    text = os.fspath(url)
    scheme = url_scheme(text)
    factories = collect("register_artifact_stores")
    factory = factories.get(scheme)
    if factory is None:
        known = ", ".join(repr(name) for name in sorted(factories)) or "none"
        raise NotFoundError(
            f"no artifact store handles {scheme!r} URLs like {text!r} (known schemes: {known}); "
            "install or register a plugin implementing register_artifact_stores"
        )
    store = factory(text)
    if not isinstance(store, ArtifactStore):
        raise PluginError(
            f"the artifact store factory for {scheme!r} returned {type(store).__name__}, "
            "which lacks the ArtifactStore methods (url, put, get, exists, delete, keys)"
        )
    return store
