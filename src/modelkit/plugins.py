"""The plugin manager: default plugins, entry points and the environment switches.

modelkit finds plugins in three places:

1. its own default plugins (``modelkit.default_plugins``), registered through the same hooks
   third parties use;
2. installed distributions that declare an entry point in the ``modelkit`` group::

       [project.entry-points.modelkit]
       my_plugin = "my_package.modelkit_plugin"

3. plugins an embedding application registers itself with ``get_plugin_manager().register``.

Two environment variables control loading:

``MODELKIT_LOAD_PLUGINS``
    Unset: load every entry point in the ``modelkit`` group. Empty: load none. A comma list:
    load only those entry-point names.
``MODELKIT_DISABLE_PLUGINS``
    A comma list of plugin names (entry-point names or default plugin names such as
    ``modelkit.local_store``) that are never registered.

Entry points are loaded the first time :func:`get_plugin_manager` is called, never at import.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import pluggy

from modelkit import hookspecs
from modelkit.exceptions import HookFailedWarning, NotFoundError, PluginError

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRYPOINT_GROUP",
    "PluginInfo",
    "collect",
    "get_plugin_manager",
    "list_plugins",
    "make_plugin_manager",
    "notify",
    "set_plugin_manager",
    "use_plugin_manager",
]

ENTRYPOINT_GROUP = "modelkit"
LOAD_ENV = "MODELKIT_LOAD_PLUGINS"
DISABLE_ENV = "MODELKIT_DISABLE_PLUGINS"

DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("modelkit.sklearn_model", "modelkit.default_plugins.sklearn_model"),
    ("modelkit.local_store", "modelkit.default_plugins.local_store"),
    ("modelkit.sqlite_registry", "modelkit.default_plugins.sqlite_registry"),
    ("modelkit.postgres_registry", "modelkit.default_plugins.postgres_registry"),
    ("modelkit.commands", "modelkit.default_plugins.commands"),
    ("modelkit.registry_commands", "modelkit.default_plugins.registry_commands"),
    ("modelkit.demo", "modelkit.default_plugins.demo"),
    ("modelkit.api_key_auth", "modelkit.default_plugins.api_key_auth"),
    ("modelkit.servers", "modelkit.default_plugins.servers"),
    ("modelkit.native_server", "modelkit.default_plugins.native_server"),
    ("modelkit.serve_command", "modelkit.default_plugins.serve_command"),
    ("modelkit.batch_command", "modelkit.default_plugins.batch_command"),
    ("modelkit.monitor_command", "modelkit.default_plugins.monitor_command"),
    ("modelkit.retrain_commands", "modelkit.default_plugins.retrain_commands"),
)
"""``(plugin name, module)`` of every built-in plugin, in registration order."""


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    environ: Mapping[str, str] | None = None,
) -> pluggy.PluginManager:
    """Build a plugin manager with modelkit's hooks and default plugins.

    ``load_entrypoints=False`` skips installed plugins entirely (what tests and embedding apps
    that want full control use). ``environ`` defaults to ``os.environ``; see the module
    docstring for the variables it reads.
    """
    env = os.environ if environ is None else environ
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in _split(env.get(DISABLE_ENV)):
        pm.set_blocked(name)
    for name, module in DEFAULT_PLUGINS:
        if not pm.is_blocked(name):
            pm.register(importlib.import_module(module), name=name)
    if load_entrypoints:
        _load_entrypoints(pm, env.get(LOAD_ENV))
    return pm


def _load_entrypoints(pm: pluggy.PluginManager, wanted: str | None) -> None:
    if wanted is None:
        pm.load_setuptools_entrypoints(ENTRYPOINT_GROUP)
        return
    names = _split(wanted)
    if not names:
        return
    from importlib.metadata import entry_points

    available = {ep.name for ep in entry_points(group=ENTRYPOINT_GROUP)}
    missing = sorted(set(names) - available)
    if missing:
        known = ", ".join(repr(n) for n in sorted(available)) or "none"
        raise NotFoundError(
            f"{LOAD_ENV} names plugins that are not installed: "
            f"{', '.join(repr(n) for n in missing)} (installed: {known})"
        )
    for name in names:
        pm.load_setuptools_entrypoints(ENTRYPOINT_GROUP, name=name)


_manager: pluggy.PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, building it on first use."""
    global _manager  # noqa: PLW0603 - the one process-wide manager, built lazily
    pm = _manager
    if pm is None:
        with _manager_lock:
            if _manager is None:
                _manager = make_plugin_manager()
            pm = _manager
    return pm


def set_plugin_manager(pm: pluggy.PluginManager | None) -> pluggy.PluginManager | None:
    """Install ``pm`` as the process-wide manager (``None``: rebuild lazily); return the old one."""
    global _manager
    with _manager_lock:
        previous, _manager = _manager, pm
    return previous


@contextmanager
def use_plugin_manager(pm: pluggy.PluginManager) -> Iterator[pluggy.PluginManager]:
    """Use ``pm`` as the process-wide manager inside a ``with`` block."""
    previous = set_plugin_manager(pm)
    try:
        yield pm
    finally:
        set_plugin_manager(previous)


def notify(hook: str, /, **kwargs: Any) -> None:
    """Call the event hook ``hook`` on every plugin; a plugin that raises only warns.

    Each implementation is called on its own so that one failing plugin neither stops the
    others nor the operation being observed: its exception becomes a
    :class:`~modelkit.exceptions.HookFailedWarning` naming the plugin and the hook.
    """
    impls = getattr(get_plugin_manager().hook, hook).get_hookimpls()
    for impl in reversed(impls):  # pluggy's own order: last registered first
        try:
            impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:
            warnings.warn(
                HookFailedWarning(
                    f"plugin {impl.plugin_name!r} raised in {hook}: "
                    f"{type(exc).__name__}: {exc}; the hook was skipped"
                ),
                stacklevel=2,
            )


def collect(hook: str, /) -> dict[str, Any]:
    """Run the ``register_*`` hook ``hook`` and return what plugins registered, by name.

    Two plugins registering the same name is a :class:`~modelkit.exceptions.PluginError`
    naming both.
    """
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    # Registration order, so that a name keeps the owner that registered it first.
    for impl in getattr(get_plugin_manager().hook, hook).get_hookimpls():
        owner = impl.plugin_name

        def register(name: str, factory: Any, /, _owner: str = owner) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"plugin {_owner!r} registered an invalid name in {hook}: "
                    f"expected a non-empty string, got {name!r}"
                )
            if name in owners:
                raise PluginError(
                    f"{hook}: {name!r} is registered by both {owners[name]!r} and {_owner!r}; "
                    f"disable one with {DISABLE_ENV}"
                )
            owners[name] = _owner
            found[name] = factory

        impl.function(register=register)
    return found


@attrs.frozen
class PluginInfo:
    """One registered plugin as ``modelkit plugins`` shows it."""

    name: str
    module: str
    hooks: tuple[str, ...]
    distribution: str | None = None
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "module": self.module,
            "hooks": list(self.hooks),
            "distribution": self.distribution,
            "version": self.version,
        }


def list_plugins(pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """Describe every registered plugin: name, module, implemented hooks, distribution."""
    pm = pm or get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        dist = dists.get(id(plugin))
        infos.append(
            PluginInfo(
                name=name,
                module=getattr(plugin, "__name__", type(plugin).__qualname__),
                hooks=hooks,
                distribution=dist.project_name if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
        )
    return infos
