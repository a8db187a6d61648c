"""Crash-safe directory writes: build in a hidden sibling, fsync, rename into place.

A directory written through :func:`atomic_directory` appears at its final path complete or not
at all, whatever moment the writing process dies at:

1. the content is written into a temporary sibling ``.<name>.tmp-<random>`` (same directory,
   so the same filesystem and ``rename(2)`` is atomic);
2. every file and directory in it is fsynced;
3. it is renamed to the final name, and the parent directory is fsynced so the rename itself
   is durable.

Replacing an existing directory (``overwrite=True``) uses ``renameat2(RENAME_EXCHANGE)`` on
Linux, which swaps the two directories in one atomic step; the previous content then sits under
the temporary name and is removed. Where that call is not available (other systems, some
filesystems) the old directory is first renamed aside to ``.<name>.old-<random>`` and the new one
renamed into place: a crash between the two renames leaves the final path absent (never
partial) and the previous version intact under the ``.old-`` name.

Every temporary name matches :func:`is_temporary_name`; readers skip such names, and a leftover
one (from a killed process) is safe to delete once no writer is running.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "CHUNK_SIZE",
    "atomic_directory",
    "commit_directory",
    "copy_file_hashed",
    "ensure_directory",
    "fsync_directory",
    "fsync_tree",
    "hash_stream",
    "is_temporary_name",
    "make_temporary_sibling",
    "temporary_path",
]

CHUNK_SIZE = 1 << 20
"""Bytes read at a time when hashing or copying files."""

_TEMP_KINDS = ("tmp", "old", "del")
_TEMP_RE = re.compile(r"^\..+\.(?:tmp|old|del)-[0-9a-f]{16}\Z")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def is_temporary_name(name: str) -> bool:
    """Tell whether ``name`` is one of the hidden names used while writing or replacing."""
    return _TEMP_RE.match(name) is not None


def temporary_path(target: Path, kind: str = "tmp") -> Path:
    """Return a fresh hidden name next to ``target``: ``.<name>.<kind>-<16 hex>`` (not created).

    ``kind`` is ``"tmp"`` (being written), ``"old"`` (being replaced) or ``"del"`` (being
    deleted).
    """
    if kind not in _TEMP_KINDS:
        raise ValueError(f"kind must be one of {_TEMP_KINDS}, got {kind!r}")
    return target.with_name(f".{target.name}.{kind}-{secrets.token_hex(8)}")


def make_temporary_sibling(target: Path, kind: str = "tmp") -> Path:
    """Create and return an empty hidden directory next to ``target`` (see temporary_path)."""
    while True:
        candidate = temporary_path(target, kind)
        try:
            candidate.mkdir()
        except FileExistsError:  # pragma: no cover - 64 random bits colliding
            continue
        return candidate


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (new, renamed or removed names) to disk."""
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Fsync every file and directory under ``root`` (children before parents, root last)."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for filename in filenames:
            _fsync_file(Path(dirpath, filename))
        fsync_directory(Path(dirpath))


def ensure_directory(path: Path) -> None:
    """Create ``path`` and any missing parents, making each new entry durable."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:  # pragma: no cover - the root always exists
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        fsync_directory(directory.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - Linux-only system call
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # pragma: no cover - glibc older than 2.28 or another libc
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # pragma: no cover - old kernel/fs
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def _replace(new: Path, target: Path) -> None:
    """Put ``new`` at ``target`` where a directory already exists; remove the old one."""
    parent = target.parent
    if _exchange(new, target):
        fsync_directory(parent)
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the previous content
        return
    old = temporary_path(target, "old")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.rename(old, target)
        raise
    fsync_directory(parent)
    shutil.rmtree(old, ignore_errors=True)


def commit_directory(tmp: Path, target: Path, *, overwrite: bool) -> None:
    """Fsync ``tmp`` completely and rename it to ``target``, durably.

    An empty directory at ``target`` is replaced silently. A non-empty one raises
    :class:`FileExistsError` unless ``overwrite`` is true, in which case it is replaced as
    described in the module docstring.
    """
    fsync_tree(tmp)
    try:
        os.rename(tmp, target)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if not overwrite:
            raise FileExistsError(
                errno.EEXIST, "directory exists and is not empty", target
            ) from exc
        _replace(tmp, target)
    fsync_directory(target.parent)


@contextlib.contextmanager
def atomic_directory(target: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory; on a clean exit, commit it to ``target``.

    Write the content into the yielded path; nothing is visible at ``target`` until the block
    ends and :func:`commit_directory` succeeds. On an exception the temporary directory is
    removed and the exception propagates; ``target`` is untouched.
    """
    ensure_directory(target.parent)
    tmp = make_temporary_sibling(target)
    try:
        yield tmp
        commit_directory(tmp, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def hash_stream(stream: BinaryIO) -> tuple[str, int]:
    """Return the sha256 hex digest and byte count of what remains in ``stream``."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK_SIZE):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def copy_file_hashed(src: Path, dst: Path) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (parents created) and return the sha256 and size of what was copied.

    The hash is of the bytes actually written, so a caller can compare it with what it expected
    the source to hold.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with src.open("rb") as fin, dst.open("xb") as fout:
        while chunk := fin.read(CHUNK_SIZE):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
