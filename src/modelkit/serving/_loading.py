"""Building the served models: checking the model list, resolving and loading it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from modelkit.exceptions import RegistryError, UnsupportedModelError
from modelkit.serving._http import ServingError
from modelkit.serving._records import ServedModel
from modelkit.serving.batching import BatchOptions

if TYPE_CHECKING:
    from modelkit.model import Model
    from modelkit.registry import Registry

DEFAULT_BATCHING = BatchOptions()


def batching_options(
    value: bool | BatchOptions | Mapping[str, bool | BatchOptions],
) -> BatchOptions | Mapping[str, BatchOptions]:
    def one(item: object, where: str) -> BatchOptions:
        if isinstance(item, BatchOptions):
            return item
        if isinstance(item, bool):
            return DEFAULT_BATCHING if item else BatchOptions(enabled=False)
        raise ServingError(f"batching{where} must be True, False or a BatchOptions, got {item!r}")

    if isinstance(value, Mapping):
        return {str(name): one(item, f"[{name!r}]") for name, item in value.items()}
    return one(value, "")


def check_sources(
    models: tuple[Any, ...], named: Mapping[str, Any]
) -> tuple[tuple[str | None, Model | str], ...]:
    from modelkit.model import Model

    items: list[tuple[str | None, Any]] = []
    for item in models:
        if isinstance(item, Mapping):
            items.extend(item.items())
        else:
            items.append((None, item))
    items.extend(named.items())
    if not items:
        raise ServingError("serve at least one model: pass a Model or a registry URI")
    for name, item in items:
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ServingError(
                f"a served model name must be a non-empty string without '/', got {name!r}"
            )
        if isinstance(item, Model):
            if name is None and not item.name:
                raise ServingError(
                    "a Model served without a name: build it with Model.wrap(..., name='churn') "
                    "or pass it as churn=model"
                )
        elif not isinstance(item, str) or not item:
            raise UnsupportedModelError(
                f"cannot serve a {type(item).__name__}: pass a modelkit Model or a registry URI "
                "such as 'churn@production' (wrap an estimator with Model.wrap)"
            )
    return tuple(items)


def load_models(
    sources: tuple[tuple[str | None, Model | str], ...], registry: Registry | str | None
) -> dict[str, ServedModel]:
    from modelkit.model import Model

    served: dict[str, ServedModel] = {}
    opened: Registry | None = None
    try:
        for name, item in sources:
            started = time.perf_counter()
            if isinstance(item, Model):
                entry = ServedModel(name=name or str(item.name), model=item)
            else:
                if opened is None:
                    opened = open_registry(registry)
                found = opened.resolve(item)
                # load the exact version resolved, even if an alias moves meanwhile
                artifact = opened.load_artifact(f"models:/{found.name}/{found.version}")
                entry = ServedModel(
                    name=name or found.name,
                    model=artifact.model,
                    version=str(found.version),
                    uri=item,
                    sha256=found.artifact_sha256,
                    load_seconds=time.perf_counter() - started,
                    artifact=artifact,
                )
            if entry.name in served:
                raise ServingError(
                    f"two served models are named {entry.name!r}; give one another name "
                    f"(e.g. {entry.name}_2=...)"
                )
            if entry.model.name != entry.name:
                entry = attrs.evolve(entry, model=attrs.evolve(entry.model, name=entry.name))
            served[entry.name] = entry
    finally:
        if opened is not None and opened is not registry:
            opened.close()
    return served


def open_registry(registry: Registry | str | None) -> Registry:
    from modelkit.registry import Registry

    if isinstance(registry, Registry):
        return registry
    return Registry(registry)


def own_registry(registry: Registry | str | None) -> tuple[Registry, bool]:
    """A registry for a background thread, and whether the caller is to close it.

    A :class:`~modelkit.Registry` is reopened (connections of its own, so that closing
    either never closes one the other uses), or shared when its backend cannot be; a URL (or
    ``None``: the default location) is opened.
    """
    from modelkit.registry import Registry

    if not isinstance(registry, Registry):
        return Registry(registry), True
    try:
        return registry.reopen(), True
    except RegistryError:
        return registry, False


def describe(entry: ServedModel) -> str:
    version = "unversioned" if entry.version is None else f"version {entry.version}"
    origin = f" from {entry.uri}" if entry.uri else ""
    return f"{entry.name!r} ({version}{origin})"
