"""The ``file`` artifact store: artifact directories on a local (or mounted) filesystem.

Layout, for content-addressed keys (a manifest sha256)::

    <root>/
      3f/
        3f9a…c2/          one complete artifact directory per key
          manifest.json
          model.joblib
      .3f9a…c2.tmp-…      (transient) a put in progress, or left by a killed one

Writes go through the same temporary-sibling, fsync and rename discipline as
:meth:`modelkit.Artifact.save`, so a key is either absent or complete. Hidden temporary
directories are never listed as keys; leftovers from a killed process can be deleted when no
write is running.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import attrs

from modelkit import _atomic
from modelkit.exceptions import (
    ArtifactError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    NotFoundError,
)
from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from modelkit.stores import ArtifactStore

__all__ = ["LocalArtifactStore", "register_artifact_stores"]

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(
            f"invalid artifact key {key!r}: use 1-200 characters from A-Z a-z 0-9 . _ - "
            "starting with a letter or digit (e.g. a manifest sha256)"
        )
    return key


def _root_from_url(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or len(parts.scheme) == 1:
        return Path(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            f"file URL {url!r} names host {parts.netloc!r}; only local paths are supported "
            "(file:///absolute/path)"
        )
    return Path(unquote(parts.path))


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(path))


@attrs.define
class LocalArtifactStore:
    """Artifact directories under ``root``, one per key, at ``<root>/<key[:2]>/<key>/``.

    The root is created on the first :meth:`put`. Open one from a URL with
    :meth:`from_url` or :func:`modelkit.stores.open_store`.
    """

    root: Path = attrs.field(converter=_absolute)

    @classmethod
    def from_url(cls, url: str) -> LocalArtifactStore:
        """Open the store at a plain path or a ``file:`` URL (``file:///srv/artifacts``)."""
        return cls(_root_from_url(url))

    @property
    def url(self) -> str:
        """The root as a ``file://`` URL."""
        return self.root.as_uri()

    def _dir(self, key: str) -> Path:
        _check_key(key)
        return self.root / key[:2] / key

    def put(self, src: Path, key: str) -> str:
        """Copy the verified artifact directory ``src`` in under ``key``, atomically.

        ``src`` is verified without unpickling; the copy is hashed as it is written and must
        match the manifest, so a source changing during the copy is caught. An existing key
        with the same manifest is left alone (and repaired if its files were damaged); an
        existing key with a different manifest is an
        :class:`~modelkit.exceptions.ArtifactError`. Returns the stored directory's URL.
        """
        from modelkit.artifact import MANIFEST_FILE, verify

        dest = self._dir(key)
        src = Path(src)
        try:
            raw = (src / MANIFEST_FILE).read_bytes()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(
                f"no modelkit artifact at {src}: {MANIFEST_FILE} is missing"
            ) from exc
        digest = hashlib.sha256(raw).hexdigest()
        manifest = verify(src, expected_manifest_sha256=digest)
        overwrite = False
        if dest.exists():
            if self._holds(dest, digest):
                return dest.as_uri()
            overwrite = True  # same manifest, damaged files: repair
        try:
            with _atomic.atomic_directory(dest, overwrite=overwrite) as tmp:
                for name, entry in sorted(manifest.files.items()):
                    sha, size = _atomic.copy_file_hashed(src / name, tmp / name)
                    if (sha, size) != (entry.sha256, entry.size):
                        raise ArtifactIntegrityError(
                            f"artifact {src}: {name} changed while it was being copied into "
                            f"store {self.url}; nothing was stored"
                        )
                (tmp / MANIFEST_FILE).write_bytes(raw)
        except FileExistsError as exc:
            # Another writer stored this key meanwhile; fine if it holds the same content.
            if not self._holds(dest, digest):
                raise ArtifactError(
                    f"store {self.url}: key {key!r} was written concurrently with damaged "
                    "content; put again to repair it"
                ) from exc
        return dest.as_uri()

    def _holds(self, dest: Path, digest: str) -> bool:
        """True if ``dest`` is a verified copy of the artifact whose manifest hashes to ``digest``.

        False if ``dest`` has that manifest but damaged files; an ArtifactError if it holds
        another artifact.
        """
        from modelkit.artifact import MANIFEST_FILE, verify

        try:
            existing = hashlib.sha256((dest / MANIFEST_FILE).read_bytes()).hexdigest()
        except OSError:
            existing = None
        if existing is not None and existing != digest:
            raise ArtifactError(
                f"store {self.url} already holds a different artifact under key "
                f"{dest.name!r} (manifest sha256 {existing}, not {digest}); use the manifest "
                "sha256 as the key, or delete the old entry first"
            )
        try:
            verify(dest, expected_manifest_sha256=digest)
        except (ArtifactIntegrityError, ArtifactFormatError, NotFoundError):
            return False
        return True

    def get(self, key: str) -> Path:
        """Return the directory stored under ``key`` (NotFoundError if there is none)."""
        dest = self._dir(key)
        if not dest.is_dir():
            raise NotFoundError(f"no artifact under key {key!r} in store {self.url}")
        return dest

    def exists(self, key: str) -> bool:
        """Tell whether an artifact is stored under ``key``."""
        return self._dir(key).is_dir()

    def delete(self, key: str) -> None:
        """Remove the artifact under ``key``: renamed aside atomically, then deleted."""
        dest = self._dir(key)
        aside = _atomic.temporary_path(dest, "del")
        try:
            os.rename(dest, aside)
        except FileNotFoundError as exc:
            raise NotFoundError(f"no artifact under key {key!r} in store {self.url}") from exc
        except OSError as exc:  # pragma: no cover - e.g. a file where a directory should be
            if exc.errno != errno.ENOTDIR:
                raise
            raise NotFoundError(f"no artifact under key {key!r} in store {self.url}") from exc
        _atomic.fsync_directory(dest.parent)
        shutil.rmtree(aside, ignore_errors=True)

    def keys(self) -> Iterator[str]:
        """Iterate over stored keys in sorted order, skipping temporary directories."""
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir() or shard.name.startswith("."):
                continue
            for entry in sorted(shard.iterdir()):
                name = entry.name
                if name[:2] == shard.name and _KEY_RE.match(name) and entry.is_dir():
                    yield name


def _factory(url: str) -> ArtifactStore:
    return LocalArtifactStore.from_url(url)


@hookimpl
def register_artifact_stores(
    register: Callable[[str, Callable[[str], ArtifactStore]], None],
) -> None:
    """Register the ``file`` scheme (plain paths and ``file://`` URLs)."""
    register("file", _factory)
