"""Finding plugins and letting them register.

A plugin is a module or package exposing ``register(api)``.  Plugins come from the folders in
``[plugins] paths`` and from the ``statusq.plugins`` entry-point group; ``[plugins] enabled``
picks which are imported at all, so a disabled plugin's import cannot break a daemon.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from statusq import defaults
from statusq.config import Config, HandlerSettings
from statusq.errors import PluginError
from statusq.handler import QueueHandler
from statusq.middleware import Middleware, MiddlewareChain
from statusq.periodic import declare
from statusq.registry import HandlerRegistry

if TYPE_CHECKING:
    # A type only: ``api.xmpp``'s, for plugin authors' type checkers.  The object is made by the
    # assembly layer and handed down (PluginContext); pyproject.toml lets import-linter pass it.
    from statusq.xmpp.api import XmppApi

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "statusq.plugins"
_MODULE_PREFIX = "statusq_plugin_"


@dataclass(frozen=True, slots=True)
class PluginSource:
    name: str
    origin: str  # a path or "entry point NAME = VALUE", for messages
    load: Callable[[], Any]


def _no_xmpp() -> XmppApi:
    raise PluginError("api.xmpp cannot send here: these plugins were loaded without a queue backend")


class PluginContext:
    """What the plugins of one process share, handed down by the assembly layer: its middleware
    chain, and how to make the XMPP producer (on a queue manager of the process), on first use."""

    def __init__(
        self,
        config: Config,
        middleware: MiddlewareChain | None = None,
        xmpp: Callable[[], XmppApi] | None = None,
    ) -> None:
        self.config = config
        self.middleware = middleware if middleware is not None else MiddlewareChain()
        self._make_xmpp = xmpp or _no_xmpp

    @functools.cached_property
    def xmpp(self) -> XmppApi:
        return self._make_xmpp()


class PluginApi:
    """What a plugin's ``register(api)`` may call; one instance per plugin, to name it in errors."""

    def __init__(
        self, plugin: str, registry: HandlerRegistry, config: Config, context: PluginContext | None = None
    ) -> None:
        self.plugin = plugin
        self.config = config
        self._registry = registry
        self._context = context if context is not None else PluginContext(config)
        self._middleware = self._context.middleware

    def add_middleware(self, middleware: Middleware) -> None:
        """Run ``middleware``'s hooks in this process: around every item a worker handles, every
        enqueue through a queue manager statusq opens, every control command (see
        :class:`statusq.Middleware`).  Added in the order the plugins register."""
        try:
            self._middleware.add(middleware)
        except TypeError as exc:
            raise PluginError(str(exc), key=f"plugin {self.plugin}") from None

    def register_handler(
        self,
        transport: str,
        handler_class: type[QueueHandler],
        group: str = defaults.DEFAULT_GROUP,
        **settings: Any,
    ) -> None:
        """Serve ``transport`` with ``handler_class``.  ``settings``: how its items are run,
        ``time_limit``, ``max_retries``, ``retry_delay``, ``retry_delay_max``, ``expires`` (durations
        as seconds or ``"30s"``); ``[transports.NAME]`` in the config overrides each.  A bad or
        unknown one stops start-up, named."""
        self._registry.register(
            transport, handler_class, group=group, plugin=self.plugin, settings=self._settings(transport, settings)
        )

    def _settings(self, transport: str, settings: dict[str, Any]) -> HandlerSettings:
        where = f"plugin {self.plugin}: register_handler({transport!r})"
        if "priority" in settings:
            # Producers never import a plugin (they route and prioritise from the config alone),
            # so a priority given here could never reach an enqueue: refused, not ignored.
            raise PluginError(
                f"priority is read by producers, which never load plugins: set [transports.{transport}] "
                "priority in the config instead",
                key=where,
            )
        try:
            return HandlerSettings.model_validate(settings)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(map(str, e['loc']))}: "
                + ("unknown option" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
            raise PluginError("; ".join(problems), key=where) from None

    @property
    def xmpp(self) -> XmppApi:
        """Send XMPP from handlers: ``api.xmpp.send(site, to, body)`` queues onto ``xmppout`` (see
        :mod:`statusq.xmpp`), made on first use."""
        return self._context.xmpp

    def register_queue(self, name: str, kind: str = "serial", *, transport: str, **options: Any) -> None:
        """Declare a periodic queue whose runs the dispatcher enqueues onto ``transport``.

        Serial: ``frequency`` (default 5m), ``items`` per run (5), ``source(limit)`` returning the
        items to run (default: one item per run).  Batch: ``members()`` returning every item that
        must be processed once per period, ``frequency`` (1h), ``threshold``/``min_runs``/
        ``max_runs`` (100/1/6).  Both: ``timeout`` (10m), ``enabled``, ``priority``,
        ``description``.  See :func:`statusq.periodic.declare`.
        """
        spec = declare(name, kind, transport=transport, plugin=self.plugin, **options)
        self._registry.queues.register(spec)


def _import_path(name: str, path: Path) -> ModuleType:
    """Import a plugin file or package under a private name, so it cannot shadow a real module."""
    module_name = _MODULE_PREFIX + name
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(
            module_name, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _path_sources(paths: list[str]) -> list[PluginSource]:
    sources = []
    for folder in map(Path, paths):
        if not folder.is_dir():
            raise PluginError("plugin folder does not exist", key="plugins.paths", file=str(folder))
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(("_", ".")):
                continue
            if entry.is_dir() and (entry / "__init__.py").exists():
                name = entry.name
            elif entry.is_file() and entry.suffix == ".py":
                name = entry.stem
            else:
                continue
            sources.append(PluginSource(name, str(entry), functools.partial(_import_path, name, entry)))
    return sources


def _entry_point_sources() -> list[PluginSource]:
    return [
        PluginSource(ep.name, f"entry point {ep.name} = {ep.value}", ep.load)
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    ]


def discover(config: Config) -> list[PluginSource]:
    """Every plugin found, filtered by ``enabled``; two plugins of one name are an error."""
    found: dict[str, PluginSource] = {}
    for source in _path_sources(config.plugins.paths) + _entry_point_sources():
        other = found.get(source.name)
        if other is not None:
            raise PluginError(f"two plugins named {source.name!r}: {other.origin} and {source.origin}")
        found[source.name] = source
    enabled = config.plugins.enabled
    if enabled is None:
        return list(found.values())
    missing = [name for name in enabled if name not in found]
    if missing:
        raise PluginError(
            f"enabled plugin(s) not found: {', '.join(missing)} (found: {', '.join(sorted(found)) or 'none'})",
            file=config.source,
            key="plugins.enabled",
        )
    return [found[name] for name in enabled]


def _register_function(source: PluginSource) -> Callable[[PluginApi], Any]:
    try:
        loaded = source.load()
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(exc)).strip()
        raise PluginError(f"plugin {source.name!r} failed to import ({source.origin}): {detail}") from exc
    register = loaded if callable(loaded) and not isinstance(loaded, ModuleType) else None
    if register is None:
        register = getattr(loaded, "register", None)
    if not callable(register):
        raise PluginError(f"plugin {source.name!r} ({source.origin}) has no register(api) function")
    return register  # type: ignore[no-any-return]


def load_plugins(
    config: Config, registry: HandlerRegistry | None = None, *, context: PluginContext | None = None
) -> HandlerRegistry:
    """Import every enabled plugin and let it register (handlers, periodic queues, middleware
    into ``context``'s chain); any failure stops start-up."""
    registry = registry if registry is not None else HandlerRegistry()
    context = context if context is not None else PluginContext(config)
    for source in discover(config):
        register = _register_function(source)
        try:
            register(PluginApi(source.name, registry, config, context))
        except PluginError:
            raise
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(exc)).strip()
            raise PluginError(f"plugin {source.name!r} failed in register(): {detail}") from exc
        log.debug("plugin loaded: %s (%s)", source.name, source.origin)
    registry.queues.check_handlers(registry)  # a queue nobody handles: refused at start-up
    return registry
