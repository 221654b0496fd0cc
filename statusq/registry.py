"""Which handler class serves which transport, filled by plugins at start-up.

Mistakes (a transport claimed twice, a class that is not a QueueHandler, a bad name) are errors
at registration, so a daemon refuses to start rather than failing on the first item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from statusq import defaults
from statusq.config import HandlerSettings
from statusq.errors import PluginError
from statusq.handler import QueueHandler
from statusq.periodic import QueueRegistry

_NAME = re.compile(defaults.NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Registration:
    transport: str
    handler_class: type[QueueHandler]
    group: str
    plugin: str
    #: What the plugin asked for (``register_handler(..., time_limit=...)``); the config may
    #: override each (``[transports.NAME]``).
    settings: HandlerSettings = field(default_factory=HandlerSettings)


class HandlerRegistry:
    def __init__(self) -> None:
        self._by_transport: dict[str, Registration] = {}
        self._instances: dict[str, QueueHandler] = {}
        #: The periodic queues the same plugins declared (``api.register_queue``).
        self.queues = QueueRegistry()

    def register(
        self,
        transport: str,
        handler_class: type[QueueHandler],
        *,
        group: str,
        plugin: str,
        settings: HandlerSettings | None = None,
    ) -> None:
        for what, value in (("transport", transport), ("group", group)):
            if not isinstance(value, str) or not _NAME.match(value):
                raise PluginError(
                    f"{what} name {value!r} is invalid (lowercase letters, digits, '_.-')",
                    key=f"plugin {plugin}",
                )
        if not (isinstance(handler_class, type) and issubclass(handler_class, QueueHandler)):
            raise PluginError(
                f"handler for {transport!r} must be a QueueHandler subclass, got {handler_class!r}",
                key=f"plugin {plugin}",
            )
        previous = self._by_transport.get(transport)
        if previous is not None:
            raise PluginError(
                f"transport {transport!r} registered twice: by plugin {previous.plugin!r} "
                f"({previous.handler_class.__qualname__}) and by plugin {plugin!r} "
                f"({handler_class.__qualname__})"
            )
        self._by_transport[transport] = Registration(
            transport, handler_class, group, plugin, settings if settings is not None else HandlerSettings()
        )

    def get(self, transport: str) -> Registration | None:
        return self._by_transport.get(transport)

    def handler(self, transport: str) -> QueueHandler | None:
        """The process's one instance for this transport, created on first use."""
        handler = self._instances.get(transport)
        if handler is None:
            registration = self._by_transport.get(transport)
            if registration is None:
                return None
            handler = self._instances[transport] = registration.handler_class()
        return handler

    def transports(self, groups: set[str] | None = None) -> set[str]:
        return {r.transport for r in self._by_transport.values() if groups is None or r.group in groups}

    def groups(self) -> set[str]:
        return {r.group for r in self._by_transport.values()}

    def __len__(self) -> int:
        return len(self._by_transport)
