"""Saved models: integrity-checked directories written atomically.

An artifact is a directory::

    my-model/
      manifest.json        what was saved, by which library versions, and every file's sha256
      model.joblib         the fitted estimator (joblib, i.e. pickle)
      input_example.json   a few input rows (when a sample was given), e.g. for warm-up
      notes.txt ...        any extra files the caller attached

:meth:`Artifact.save` writes it atomically (see :mod:`modelkit._atomic`): a process killed at
any moment leaves either the complete artifact or nothing loadable at the target path.
:meth:`Artifact.load` checks every file's size and sha256 against the manifest *before*
anything is unpickled, and, given the manifest hash a registry recorded, that the manifest is
the one that was recorded.

Integrity is not trust: ``model.joblib`` is a pickle, and loading it runs code. The checks
prove the files are the ones that were saved (and, with an expected manifest hash, the ones a
registry recorded); they do not make an artifact from an untrusted source safe to load.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from modelkit import _atomic
from modelkit._manifest import (
    FORMAT_VERSION,
    INPUT_EXAMPLE_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    RESERVED,
    FileEntry,
    Manifest,
    canonical_json,
    check_name,
    check_relative_name,
    json_safe,
    normalise_sha256,
    optional_str,
    to_metrics,
    to_tags,
)
from modelkit.exceptions import (
    ArtifactError,
    ArtifactExistsError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    NotFoundError,
    VersionMismatchError,
    VersionMismatchWarning,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO

    from modelkit.data import Profile
    from modelkit.model import Model

__all__ = [
    "FORMAT_VERSION",
    "INPUT_EXAMPLE_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "Artifact",
    "FileEntry",
    "Manifest",
    "verify",
]

INPUT_EXAMPLE_ROWS = 5
"""How many rows of the ``sample`` are kept as the input example."""

RUNTIME_PACKAGES = ("numpy", "scipy", "scikit-learn", "joblib")
"""Distributions whose versions are recorded in every manifest (with python and modelkit)."""


# -- what goes into a manifest ------------------------------------------------------------


def _params_of(estimator: Any) -> dict[str, Any]:
    """``estimator.get_params(deep=False)`` as JSON: anything JSON cannot hold becomes its repr."""
    get_params = getattr(estimator, "get_params", None)
    if get_params is None:
        return {}
    params = get_params(deep=False)
    return {str(k): json_safe(v, other=repr, nonfinite=repr) for k, v in params.items()}


def _input_example(sample: Any, rows: int = INPUT_EXAMPLE_ROWS) -> dict[str, Any]:
    """The first ``rows`` rows of ``sample`` as ``{"columns": [...] | None, "data": [...]}``."""
    import numpy as np

    columns: list[str] | None = None
    if hasattr(sample, "columns") and hasattr(sample, "iloc"):  # a DataFrame, duck-typed
        head = sample.iloc[:rows]
        columns = [str(c) for c in head.columns]
        data = head.to_numpy(dtype=object).tolist()
    else:
        data = np.asarray(sample)[:rows].tolist()
    return {
        "columns": columns,
        "data": json_safe(data, other=str, nonfinite=lambda _: None),
    }


def _runtime_versions() -> dict[str, str | None]:
    """Versions of python, the libraries an estimator pickle depends on, and modelkit."""
    from importlib.metadata import PackageNotFoundError, version

    from modelkit._version import __version__

    def installed(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    found: dict[str, str | None] = {"python": platform.python_version()}
    found.update((dist, installed(dist)) for dist in RUNTIME_PACKAGES)
    found["modelkit"] = __version__
    return found


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- verification -------------------------------------------------------------------------


def _integrity_error(root: Path, name: str, problem: str) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(
        f"artifact {root}: {name} {problem}; the artifact is not the one that was saved, so "
        "nothing was unpickled. Restore it from its store or registry, or save it again"
    )


def _check_size_of(root: Path, name: str, entry: FileEntry, size: int) -> None:
    if size != entry.size:
        raise _integrity_error(
            root, name, f"is {size} bytes but the manifest records {entry.size} bytes"
        )


def _check_digest_of(root: Path, name: str, entry: FileEntry, digest: str) -> None:
    if digest != entry.sha256:
        raise _integrity_error(
            root, name, f"has sha256 {digest} but the manifest records {entry.sha256}"
        )


def _check_stream(root: Path, name: str, entry: FileEntry, stream: BinaryIO) -> None:
    """Compare an open file's size and streamed sha256 with its manifest entry."""
    _check_size_of(root, name, entry, os.fstat(stream.fileno()).st_size)
    digest, read = _atomic.hash_stream(stream)
    _check_size_of(root, name, entry, read)
    _check_digest_of(root, name, entry, digest)


def _open_listed(root: Path, name: str) -> BinaryIO:
    path = root / name
    try:
        if path.is_symlink() or not path.is_file():
            raise _integrity_error(
                root, name, "is not a regular file" if path.exists() else "is missing"
            )
        return path.open("rb")
    except FileNotFoundError as exc:
        raise _integrity_error(root, name, "is missing") from exc


def _read_manifest(root: Path, expected_manifest_sha256: str | None) -> tuple[Manifest, str]:
    """Read, hash and parse ``manifest.json``; check the hash against the expected one."""
    try:
        raw = (root / MANIFEST_FILE).read_bytes()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFoundError(f"no modelkit artifact at {root}: {MANIFEST_FILE} is missing") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if expected_manifest_sha256 is not None:
        expected = normalise_sha256(expected_manifest_sha256)
        if digest != expected:
            raise _integrity_error(
                root,
                MANIFEST_FILE,
                f"has sha256 {digest} but {expected} was expected (the manifest was replaced "
                "or this is another artifact)",
            )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactFormatError(
            f"artifact {root}: {MANIFEST_FILE} is not valid UTF-8 JSON: {exc}"
        ) from exc
    return Manifest.from_dict(data), digest


def _verify_tree(
    root: Path,
    expected_manifest_sha256: str | None = None,
    *,
    defer: frozenset[str] = frozenset(),
) -> tuple[Manifest, str]:
    """Verify the directory ``root`` against its manifest, without unpickling anything.

    Files named in ``defer`` are checked for presence but their content is left to the caller,
    which reads them once, hashing as it goes. Returns the manifest and its sha256.
    """
    if not root.is_dir():
        raise NotFoundError(f"no modelkit artifact at {root}: not a directory")
    manifest, digest = _read_manifest(root, expected_manifest_sha256)
    present: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            present.add((rel / name).as_posix())
    unexpected = sorted(present - set(manifest.files) - {MANIFEST_FILE})
    if unexpected:
        raise _integrity_error(
            root, repr(unexpected[0]), "is present but not listed in the manifest"
        )
    for name, entry in sorted(manifest.files.items()):
        with _open_listed(root, name) as stream:
            if name not in defer:
                _check_stream(root, name, entry, stream)
    return manifest, digest


def verify(path: str | os.PathLike[str], expected_manifest_sha256: str | None = None) -> Manifest:
    """Check an artifact directory against its manifest without unpickling anything.

    Every listed file must exist with the recorded size and sha256 (hashed in chunks), and no
    unlisted file may be present. With ``expected_manifest_sha256`` (hex, optionally prefixed
    ``sha256:``, as a registry records it) the manifest itself must hash to that value.

    Raises :class:`~modelkit.exceptions.NotFoundError` (no artifact there, or a temporary
    directory of an unfinished save), :class:`~modelkit.exceptions.ArtifactIntegrityError`
    (a file missing, changed, truncated or unexpected, or the manifest hash differs) or
    :class:`~modelkit.exceptions.ArtifactFormatError` (malformed or newer manifest).
    """
    root = _artifact_dir(path)
    manifest, _ = _verify_tree(root, expected_manifest_sha256)
    return manifest


def _artifact_dir(path: str | os.PathLike[str]) -> Path:
    root = Path(os.path.abspath(path))
    if _atomic.is_temporary_name(root.name):
        raise NotFoundError(
            f"{root} is a temporary directory of an unfinished save or replacement, not an "
            "artifact; it is safe to delete once no save is running"
        )
    return root


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _check_versions(root: Path, manifest: Manifest, *, strict: bool) -> None:
    """Warn (or, strict, raise) when the artifact was saved under other library versions."""
    current = _runtime_versions()
    problems = []
    for dist, same in (
        ("scikit-learn", lambda a, b: a == b),
        ("numpy", lambda a, b: _major_minor(a) == _major_minor(b)),
        ("joblib", lambda a, b: _major_minor(a) == _major_minor(b)),
    ):
        saved, here = manifest.runtime.get(dist), current.get(dist)
        if isinstance(saved, str) and isinstance(here, str) and not same(saved, here):
            problems.append(f"{dist} {saved} (this environment has {here})")
    if not problems:
        return
    message = (
        f"artifact {manifest.name!r} at {root} was saved with {', '.join(problems)}; the model "
        "may fail to load or predict differently. Install the saved versions, or re-train and "
        "save under these ones"
    )
    if strict:
        raise VersionMismatchError(message + " (refused because strict=True)")
    warnings.warn(VersionMismatchWarning(message), stacklevel=3)


# -- the artifact -------------------------------------------------------------------------


def _to_extra_files(value: Mapping[str, Any] | None) -> dict[str, Path | bytes]:
    if value is None:
        return {}
    out: dict[str, Path | bytes] = {}
    for name, content in dict(value).items():
        if isinstance(content, (bytes, bytearray, memoryview)):
            out[name] = bytes(content)
        elif isinstance(content, (str, os.PathLike)):
            out[name] = Path(content)
        else:
            raise TypeError(
                f"extra file {name!r} must be a path or bytes, got {type(content).__name__}"
            )
    return out


def _check_extra_files(
    _inst: object, _attribute: attrs.Attribute[Any], value: Mapping[str, Any]
) -> None:
    for name in value:
        check_relative_name(name)
        if name in RESERVED:
            raise ValueError(
                f"extra file name {name!r} is reserved by the artifact format; choose another"
            )


@attrs.define(kw_only=True, eq=False, repr=False)
class Artifact:
    """A model with everything needed to save it, verify it and load it back.

    Build one with :meth:`from_model`, write it with :meth:`save`, read it with :meth:`load`.
    After either, :attr:`manifest` and :attr:`manifest_sha256` describe the directory on disk.

    ``extra_files`` maps a relative name (``"notes.txt"``, ``"docs/card.md"``) to bytes or a
    path; on a loaded artifact the values are paths inside the verified directory.
    ``input_example`` is ``{"columns": [...] | None, "data": [[...], ...]}`` with a few rows of
    the sample the model was saved with, or ``None``.
    """

    model: Model
    name: str = attrs.field(validator=check_name)
    metrics: dict[str, float] = attrs.field(factory=dict, converter=to_metrics)
    params: dict[str, Any] = attrs.field(factory=dict)
    profile: Profile | None = None
    fingerprint: str | None = attrs.field(default=None, validator=optional_str)
    tags: dict[str, str] = attrs.field(factory=dict, converter=to_tags)
    extra_files: dict[str, Path | bytes] = attrs.field(
        factory=dict, converter=_to_extra_files, validator=_check_extra_files
    )
    input_example: dict[str, Any] | None = None
    _manifest: Manifest | None = attrs.field(default=None, init=False, repr=False)
    _manifest_sha256: str | None = attrs.field(default=None, init=False, repr=False)
    _path: Path | None = attrs.field(default=None, init=False, repr=False)

    @classmethod
    def from_model(
        cls,
        model_or_estimator: Any,
        *,
        name: str,
        sample: Any = None,
        metrics: Mapping[str, float] | None = None,
        profile: Profile | None = None,
        fingerprint: str | None = None,
        extra_files: Mapping[str, str | os.PathLike[str] | bytes] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Artifact:
        """Build an artifact from a :class:`~modelkit.Model` or a fitted estimator.

        An estimator is wrapped with :meth:`modelkit.Model.wrap` (``sample`` lets it infer the
        signature). The first rows of ``sample`` become the input example. ``params`` are the
        estimator's ``get_params(deep=False)``, with values JSON cannot hold kept as their
        ``repr``. ``fingerprint`` and ``profile`` describe the training data
        (:class:`modelkit.Dataset`).
        """
        from modelkit.model import Model

        if isinstance(model_or_estimator, Model):
            model = model_or_estimator
        else:
            model = Model.wrap(model_or_estimator, sample=sample, name=name)
        return cls(
            model=model,
            name=name,
            metrics=to_metrics(metrics),
            params=_params_of(model.estimator),
            profile=profile,
            fingerprint=fingerprint,
            tags=to_tags(tags),
            extra_files=_to_extra_files(extra_files),
            input_example=None if sample is None else _input_example(sample),
        )

    @property
    def manifest(self) -> Manifest:
        """The manifest of the directory this artifact was last saved to or loaded from."""
        if self._manifest is None:
            raise ArtifactError(
                f"artifact {self.name!r} has no manifest yet: it is written by save()"
            )
        return self._manifest

    @property
    def manifest_sha256(self) -> str:
        """sha256 (hex) of ``manifest.json`` exactly as stored: the artifact's identity.

        Record it (a registry does) and pass it to :meth:`load` as
        ``expected_manifest_sha256`` to detect a replaced artifact.
        """
        if self._manifest_sha256 is None:
            raise ArtifactError(
                f"artifact {self.name!r} has no manifest hash yet: it is written by save()"
            )
        return self._manifest_sha256

    @property
    def path(self) -> Path | None:
        """The directory this artifact was last saved to or loaded from, if any."""
        return self._path

    def __repr__(self) -> str:
        """Short description: name, model, metrics and where it lives (never the data)."""
        digest = self._manifest_sha256
        return (
            f"Artifact(name={self.name!r}, model={self.model!r}, metrics={self.metrics!r}, "
            f"extra_files={sorted(self.extra_files)!r}, "
            f"manifest_sha256={digest[:12] + '…' if digest else None!r}, path={self._path})"
        )

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the artifact to the directory ``path``, atomically; return its absolute path.

        The files are written into a hidden sibling (``.<name>.tmp-<random>``), fsynced,
        renamed into place, and the parent directory fsynced: a crash at any moment leaves
        either the complete artifact or nothing loadable at ``path``. Missing parent
        directories are created.

        An existing artifact (or any non-empty directory) at ``path`` is an
        :class:`~modelkit.exceptions.ArtifactError` unless ``overwrite=True``. With it, an
        existing *artifact* (a directory holding ``manifest.json``) is replaced: in one atomic
        step on Linux; elsewhere the path is briefly absent (never partial) and the previous
        version is kept under ``.<name>.old-<random>`` until the new one is in place. A
        non-empty directory that is not an artifact is never replaced.

        Calls the ``on_artifact_saved`` event hook.
        """
        from modelkit.plugins import notify

        target = Path(os.path.abspath(path))
        self._check_target(target, overwrite=overwrite)
        try:
            with _atomic.atomic_directory(target, overwrite=overwrite) as tmp:
                manifest = self._write_payload(tmp)
                data = manifest.to_bytes()
                (tmp / MANIFEST_FILE).write_bytes(data)
        except FileExistsError as exc:
            raise ArtifactExistsError(
                f"cannot save artifact {self.name!r}: {target} was created by another writer "
                "during the save; pass overwrite=True to replace it"
            ) from exc
        self._manifest = manifest
        self._manifest_sha256 = hashlib.sha256(data).hexdigest()
        self._path = target
        notify("on_artifact_saved", artifact=self, path=target)
        return target

    def _check_target(self, target: Path, *, overwrite: bool) -> None:
        if not target.exists():
            return
        if not target.is_dir():
            raise ArtifactExistsError(
                f"cannot save artifact {self.name!r}: {target} exists and is not a directory"
            )
        if not any(target.iterdir()):
            return
        if not (target / MANIFEST_FILE).exists():
            raise ArtifactExistsError(
                f"cannot save artifact {self.name!r}: {target} is a non-empty directory that "
                "is not an artifact; choose another path or empty it"
            )
        if not overwrite:
            raise ArtifactExistsError(
                f"cannot save artifact {self.name!r}: an artifact already exists at {target}; "
                "pass overwrite=True to replace it"
            )

    def _write_payload(self, root: Path) -> Manifest:
        """Write every payload file into ``root`` and return the manifest describing them."""
        import joblib

        files: dict[str, FileEntry] = {}
        for name, content in sorted(self.extra_files.items()):
            dest = root / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                dest.write_bytes(content)
            else:
                try:
                    _atomic.copy_file_hashed(content, dest)
                except (FileNotFoundError, IsADirectoryError) as exc:
                    raise NotFoundError(
                        f"extra file {name!r}: {content} is not a readable file"
                    ) from exc
        if self.input_example is not None:
            (root / INPUT_EXAMPLE_FILE).write_bytes(canonical_json(self.input_example))
        try:
            joblib.dump(self.model.estimator, root / MODEL_FILE)
        except Exception as exc:
            raise ArtifactError(
                f"cannot save artifact {self.name!r}: its estimator cannot be pickled "
                f"({type(exc).__name__}: {exc}); remove unpicklable attributes such as "
                "lambdas, open files or locks"
            ) from exc
        for dirpath, _dirnames, filenames in os.walk(root):
            for filename in filenames:
                file = Path(dirpath, filename)
                with file.open("rb") as stream:
                    digest, size = _atomic.hash_stream(stream)
                files[file.relative_to(root).as_posix()] = FileEntry(sha256=digest, size=size)
        return Manifest(
            name=self.name,
            created_at=datetime.now(timezone.utc),
            model_class=_class_path(self.model.estimator),
            signature=self.model.signature.to_dict(),
            fingerprint=self.fingerprint,
            profile=None if self.profile is None else self.profile.to_dict(),
            params=self.params,
            metrics=self.metrics,
            tags=self.tags,
            runtime=_runtime_versions(),
            files=files,
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expected_manifest_sha256: str | None = None,
        strict: bool = False,
    ) -> Artifact:
        """Verify the artifact directory at ``path``, then load it.

        Before anything is unpickled, every file listed in the manifest is checked for size and
        sha256 (streamed in chunks), and no unlisted file may be present. Pass
        ``expected_manifest_sha256`` (what a registry recorded, see :attr:`manifest_sha256`)
        to also reject a manifest that was replaced: without it, someone able to rewrite the
        whole directory can substitute another consistent artifact.

        **Security.** ``model.joblib`` is a pickle: loading it runs code chosen by whoever
        wrote it. The checks prove the files are the ones that were saved (and, with the
        expected hash, the ones the registry recorded); they do not make an artifact from an
        untrusted source safe. Only load artifacts you or your registry produced.

        An artifact saved under another scikit-learn version, or another numpy or joblib
        major.minor version, triggers a :class:`~modelkit.exceptions.VersionMismatchWarning`;
        with ``strict=True`` it is an :class:`~modelkit.exceptions.ArtifactError` instead,
        raised before unpickling.

        Raises :class:`~modelkit.exceptions.NotFoundError` (nothing there, or a temporary
        directory of an unfinished save), :class:`~modelkit.exceptions.ArtifactIntegrityError`
        (a file missing, changed, truncated or unexpected; the manifest hash differs) or
        :class:`~modelkit.exceptions.ArtifactFormatError` (malformed manifest, or a newer format
        than this modelkit reads). Calls the ``on_artifact_loaded`` event hook.
        """
        from modelkit.plugins import notify

        root = _artifact_dir(path)
        manifest, digest = _verify_tree(
            root, expected_manifest_sha256, defer=frozenset({MODEL_FILE, INPUT_EXAMPLE_FILE})
        )
        input_example = None
        if INPUT_EXAMPLE_FILE in manifest.files:
            input_example = _read_input_example(root, manifest.files[INPUT_EXAMPLE_FILE])
        with _open_listed(root, MODEL_FILE) as stream:
            # Hash and unpickle from the same open file, so it cannot be swapped in between.
            _check_stream(root, MODEL_FILE, manifest.files[MODEL_FILE], stream)
            _check_versions(root, manifest, strict=strict)
            signature, profile = _decode_records(root, manifest)
            stream.seek(0)
            estimator = _unpickle(root, manifest, stream)

        from modelkit.model import Model

        artifact = cls(
            model=(
                Model.wrap(estimator, name=manifest.name)  # an older manifest without one
                if signature is None
                else Model(estimator, signature, name=manifest.name)
            ),
            name=manifest.name,
            metrics=manifest.metrics,
            params=manifest.params,
            profile=profile,
            fingerprint=manifest.fingerprint,
            tags=manifest.tags,
            extra_files={name: root / name for name in manifest.extra_files},
            input_example=input_example,
        )
        artifact._manifest = manifest
        artifact._manifest_sha256 = digest
        artifact._path = root
        notify("on_artifact_loaded", artifact=artifact, path=root)
        return artifact


def _read_input_example(root: Path, entry: FileEntry) -> Any:
    """Read ``input_example.json`` once, check those very bytes, and parse them."""
    with _open_listed(root, INPUT_EXAMPLE_FILE) as stream:
        raw = stream.read()
    _check_size_of(root, INPUT_EXAMPLE_FILE, entry, len(raw))
    _check_digest_of(root, INPUT_EXAMPLE_FILE, entry, hashlib.sha256(raw).hexdigest())
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactFormatError(
            f"artifact {root}: {INPUT_EXAMPLE_FILE} is not valid UTF-8 JSON: {exc}"
        ) from exc


def _decode_records(root: Path, manifest: Manifest) -> tuple[Any, Any]:
    """Rebuild the Signature and Profile recorded in the manifest."""
    signature = profile = None
    field = "signature"
    try:
        if manifest.signature is not None:
            from modelkit.signature import Signature

            signature = Signature.from_dict(manifest.signature)
        field = "profile"
        if manifest.profile is not None:
            from modelkit.data import Profile

            profile = Profile.from_dict(manifest.profile)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactFormatError(
            f"artifact {root}: {MANIFEST_FILE} has an invalid {field}: {exc}"
        ) from exc
    return signature, profile


def _unpickle(root: Path, manifest: Manifest, stream: BinaryIO) -> Any:
    """Unpickle the (already verified) estimator from ``stream``."""
    import joblib

    try:
        return joblib.load(stream)
    except Exception as exc:
        raise ArtifactError(
            f"artifact {root}: {MODEL_FILE} is intact but could not be unpickled "
            f"({type(exc).__name__}: {exc}); the environment probably lacks a package or "
            f"version the model ({manifest.model_class}) needs"
        ) from exc
