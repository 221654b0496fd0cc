"""Everything one process builds from a config: plugins, sites, the queue backend.

Built lazily, so an application that only enqueues never imports a plugin.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from statusq.config import Config, load_config
from statusq.plugins import load_plugins
from statusq.registry import HandlerRegistry
from statusq.sites import SiteTable

if TYPE_CHECKING:
    from statusq.queues import QueueManager


class Runtime:
    def __init__(self, config: Config) -> None:
        self.config = config

    @classmethod
    def from_path(cls, path: str | os.PathLike[str] | None = None) -> Runtime:
        return cls(load_config(path))

    @cached_property
    def registry(self) -> HandlerRegistry:
        return load_plugins(self.config)

    @cached_property
    def sites(self) -> SiteTable:
        return SiteTable(self.config)

    def queue_manager(self) -> QueueManager:
        from statusq.queues import open_queue_manager

        return open_queue_manager(self)


def connect(config_path: str | os.PathLike[str] | None = None) -> QueueManager:
    """The queue manager an application enqueues with.

    ``config_path`` defaults to ``$STATUSQ_CONFIG``, then ``/etc/statusq/statusq.toml``.
    """
    return Runtime.from_path(config_path).queue_manager()
