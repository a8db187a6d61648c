"""The artifact manifest: the record of what was saved, and its one canonical byte form.

Private machinery of :mod:`modelkit.artifact`, which re-exports :class:`Manifest` and
:class:`FileEntry`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.exceptions import ArtifactFormatError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "FORMAT_VERSION",
    "INPUT_EXAMPLE_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "RESERVED",
    "FileEntry",
    "Manifest",
    "canonical_json",
    "check_name",
    "check_relative_name",
    "is_numpy_scalar",
    "json_safe",
    "normalise_sha256",
    "optional_str",
    "to_metrics",
    "to_tags",
]

FORMAT_VERSION = 1
"""The manifest format this modelkit writes; it reads this one and older ones."""

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.joblib"
INPUT_EXAMPLE_FILE = "input_example.json"
RESERVED = frozenset({MANIFEST_FILE, MODEL_FILE, INPUT_EXAMPLE_FILE})
"""File names the format itself uses; extra files cannot take them."""

_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")


# -- JSON helpers -------------------------------------------------------------------------


def check_relative_name(name: object) -> str:
    """Return ``name`` if it is a safe relative POSIX path inside an artifact, else raise."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"file names must be non-empty strings, got {name!r}")
    parts = PurePosixPath(name).parts
    if (
        "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or name.endswith("/")
        or any(part in ("", ".", "..") for part in name.split("/"))
        or any(part.startswith(".") for part in parts)
    ):
        raise ValueError(
            f"file name {name!r} must be a relative path like 'notes.txt' or 'docs/card.md' "
            "without '.', '..', hidden components, backslashes or a leading '/'"
        )
    return name


def is_numpy_scalar(value: object) -> bool:
    """True for numpy scalars (``np.float64(1.0)``, ``np.int64(3)``), without importing numpy."""
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0


def json_safe(value: Any, *, other: Callable[[Any], Any], nonfinite: Callable[[float], Any]) -> Any:
    """Turn ``value`` into plain JSON data; ``other`` handles anything JSON cannot hold."""
    if is_numpy_scalar(value):  # before the builtins: np.float64 subclasses float
        return json_safe(value.item(), other=other, nonfinite=nonfinite)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else nonfinite(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(v, other=other, nonfinite=nonfinite) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: json_safe(v, other=other, nonfinite=nonfinite) for k, v in value.items()}
    return other(value)


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The one byte form modelkit writes JSON documents in (sorted keys, UTF-8, newline)."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def normalise_sha256(value: str) -> str:
    """Accept ``"<hex>"`` or ``"sha256:<hex>"``; return the lower-case hex digest."""
    if not isinstance(value, str):
        raise TypeError(f"expected a sha256 hex string, got {type(value).__name__}")
    digest = value.removeprefix("sha256:").lower()
    if not _HEX64.match(digest):
        raise ValueError(f"expected a sha256 hex digest (64 hex characters), got {value!r}")
    return digest


# -- the manifest -------------------------------------------------------------------------


def _check_sha256(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ValueError(f"{attribute.name} must be 64 lower-case hex characters, got {value!r}")


def _check_size(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer, got {value!r}")


@attrs.frozen(kw_only=True)
class FileEntry:
    """One payload file as the manifest records it: its sha256 (hex) and size in bytes."""

    sha256: str = attrs.field(validator=_check_sha256)
    size: int = attrs.field(validator=_check_size)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"sha256": ..., "size": ...}``."""
        return {"sha256": self.sha256, "size": self.size}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileEntry:
        """Build from :meth:`to_dict` output."""
        return cls(sha256=data["sha256"], size=data["size"])


def check_name(_inst: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ValueError(
            f"name must be a non-empty string without surrounding whitespace, got {value!r}"
        )
    if not value.isprintable():
        raise ValueError(f"name must be printable, got {value!r}")


def _check_files(_inst: object, _attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    for name, entry in value.items():
        check_relative_name(name)
        if name == MANIFEST_FILE:
            raise ValueError(f"files must not list {MANIFEST_FILE!r} itself")
        if not isinstance(entry, FileEntry):
            raise TypeError(f"files[{name!r}] must be a FileEntry, got {type(entry).__name__}")
    if MODEL_FILE not in value:
        raise ValueError(f"files must list {MODEL_FILE!r}")


def _check_created_at(
    _inst: object, _attribute: attrs.Attribute[datetime], value: datetime
) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"created_at must be a timezone-aware datetime, got {value!r}")


def _to_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value.astimezone(timezone.utc)
    return value


def to_metrics(value: Mapping[str, Any] | None) -> dict[str, float]:
    if value is None:
        return {}
    out: dict[str, float] = {}
    for key, metric in dict(value).items():
        if not isinstance(key, str):
            raise TypeError(f"metric names must be strings, got {key!r}")
        if metric is None:
            out[key] = math.nan
            continue
        if isinstance(metric, bool) or not (
            isinstance(metric, (int, float)) or is_numpy_scalar(metric)
        ):
            raise TypeError(f"metric {key!r} must be a number, got {metric!r}")
        out[key] = float(metric)
    return out


def to_tags(value: Mapping[str, Any] | None) -> dict[str, str]:
    if value is None:
        return {}
    out = dict(value)
    for key, tag in out.items():
        if not isinstance(key, str) or not isinstance(tag, str):
            raise TypeError(f"tags must map strings to strings, got {key!r}: {tag!r}")
    return out


def _optional_dict(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{attribute.name} must be a dict or None, got {type(value).__name__}")


def optional_str(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{attribute.name} must be a non-empty string or None, got {value!r}")


@attrs.frozen(kw_only=True)
class Manifest:
    """What ``manifest.json`` records about an artifact.

    ``files`` maps every payload file (relative POSIX path) to its :class:`FileEntry`;
    ``manifest.json`` itself is not listed: its hash is the artifact's identity
    (:attr:`Artifact.manifest_sha256`), which a registry records and passes back to
    :meth:`Artifact.load`.
    """

    format_version: int = attrs.field(default=FORMAT_VERSION, validator=_check_size)
    name: str = attrs.field(validator=check_name)
    created_at: datetime = attrs.field(converter=_to_utc, validator=_check_created_at)
    model_class: str = attrs.field(validator=attrs.validators.instance_of(str))
    signature: dict[str, Any] | None = attrs.field(default=None, validator=_optional_dict)
    fingerprint: str | None = attrs.field(default=None, validator=optional_str)
    profile: dict[str, Any] | None = attrs.field(default=None, validator=_optional_dict)
    params: dict[str, Any] = attrs.field(factory=dict, validator=attrs.validators.instance_of(dict))
    metrics: dict[str, float] = attrs.field(factory=dict, converter=to_metrics)
    tags: dict[str, str] = attrs.field(factory=dict, converter=to_tags)
    runtime: dict[str, str | None] = attrs.field(
        factory=dict, validator=attrs.validators.instance_of(dict)
    )
    files: dict[str, FileEntry] = attrs.field(validator=_check_files)

    @property
    def extra_files(self) -> tuple[str, ...]:
        """Names of the files the caller attached (everything but the built-in ones), sorted."""
        return tuple(sorted(name for name in self.files if name not in RESERVED))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict written to ``manifest.json`` (NaN metrics become null)."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "model_class": self.model_class,
            "signature": self.signature,
            "fingerprint": self.fingerprint,
            "profile": self.profile,
            "params": self.params,
            "metrics": {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()},
            "tags": self.tags,
            "runtime": self.runtime,
            "files": {name: entry.to_dict() for name, entry in sorted(self.files.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Build from a parsed ``manifest.json``; anything wrong is an ArtifactFormatError.

        Raises :class:`~modelkit.exceptions.ArtifactFormatError` for a manifest that is not an
        object, lacks a field, has a field of the wrong type, or was written in a newer format
        than this modelkit reads. Unknown extra fields are ignored.
        """
        if not isinstance(data, Mapping):
            raise ArtifactFormatError(
                f"{MANIFEST_FILE} must hold a JSON object, got {type(data).__name__}"
            )
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ArtifactFormatError(
                f"{MANIFEST_FILE}: format_version must be a positive integer, got {version!r}"
            )
        if version > FORMAT_VERSION:
            raise ArtifactFormatError(
                f"{MANIFEST_FILE} has format version {version}, but this modelkit reads up to "
                f"version {FORMAT_VERSION}; upgrade modelkit to load this artifact"
            )
        required = ("name", "created_at", "model_class", "files")
        missing = [key for key in required if key not in data]
        if missing:
            raise ArtifactFormatError(
                f"{MANIFEST_FILE} lacks required field(s) {', '.join(map(repr, missing))}"
            )
        field = "files"
        try:
            files_raw = data["files"]
            if not isinstance(files_raw, Mapping):
                raise TypeError(f"expected an object, got {type(files_raw).__name__}")
            files = {}
            for name, entry in files_raw.items():
                field = f"files[{name!r}]"
                if not isinstance(entry, Mapping):
                    raise TypeError(f"expected an object, got {type(entry).__name__}")
                files[name] = FileEntry.from_dict(entry)
            field = "manifest"
            return cls(
                format_version=version,
                name=data["name"],
                created_at=data["created_at"],
                model_class=data["model_class"],
                signature=data.get("signature"),
                fingerprint=data.get("fingerprint"),
                profile=data.get("profile"),
                params=data.get("params", {}),
                metrics=data.get("metrics", {}),
                tags=data.get("tags", {}),
                runtime=data.get("runtime", {}),
                files=files,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactFormatError(f"{MANIFEST_FILE}: invalid {field}: {exc}") from exc

    def to_bytes(self) -> bytes:
        """The canonical bytes of :meth:`to_dict` (sorted keys, UTF-8), as written to disk."""
        try:
            return canonical_json(self.to_dict())
        except (TypeError, ValueError) as exc:
            raise ArtifactFormatError(
                f"cannot write the manifest of {self.name!r}: {exc}; the signature, profile, "
                "params and tags must be plain JSON (no NaN or Infinity, string keys)"
            ) from exc
