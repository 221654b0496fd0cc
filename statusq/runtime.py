"""Everything one process builds from a config: plugins, sites, middleware, queue backends.

This is the assembly layer: the backends below it are built from the config alone and never
reach back up here.  Plugins are loaded lazily, on the first look at :attr:`Runtime.registry`,
so an application that only enqueues never imports one, whatever the backend.
"""

from __future__ import annotations

import os
from functools import cached_property, partial
from typing import TYPE_CHECKING

from statusq.config import Config, load_config
from statusq.middleware import MiddlewareChain
from statusq.plugins import PluginContext, load_plugins
from statusq.queues.base import QueueManager
from statusq.registry import HandlerRegistry
from statusq.sites import SiteTable
from statusq.tracing import setup as tracing
from statusq.xmpp.api import XmppApi

if TYPE_CHECKING:
    from statusq.queues.db.pauses import PauseStore
    from statusq.queues.db.removals import RemovalStore


class Runtime:
    def __init__(self, config: Config) -> None:
        self.config = config

    @classmethod
    def from_path(cls, path: str | os.PathLike[str] | None = None) -> Runtime:
        return cls(load_config(path))

    @cached_property
    def middleware(self) -> MiddlewareChain:
        """The process's one chain: plugins add to it (``api.add_middleware``), a worker adds its
        own bookkeeping, and every queue manager opened here runs its enqueue hooks."""
        return MiddlewareChain(tracing.producer_middleware(self.config))

    @cached_property
    def registry(self) -> HandlerRegistry:
        xmpp = partial(XmppApi, self.config, self.queue_manager)  # api.xmpp, made on first use
        return load_plugins(self.config, context=PluginContext(self.config, self.middleware, xmpp))

    @cached_property
    def sites(self) -> SiteTable:
        return SiteTable(self.config)

    def queue_manager(self) -> QueueManager:
        """A new manager of the configured backend, with the process's middleware."""
        manager = open_queue_manager(self)
        manager.use_middleware(self.middleware)
        manager.use_pauses(self.pause_store)
        manager.use_removals(self.removal_store)
        return manager

    def pause_store(self) -> PauseStore:
        """The shared store's pause table (``db_url``); SQLAlchemy is imported only when used."""
        from statusq.queues.db.pauses import PauseStore  # noqa: PLC0415

        return PauseStore.open(self.config.db_url)

    def removal_store(self) -> RemovalStore:
        """The shared store's site removals (``db_url``), beside the pauses."""
        from statusq.queues.db.removals import RemovalStore  # noqa: PLC0415

        return RemovalStore.open(self.config.db_url)


def open_queue_manager(runtime: Runtime) -> QueueManager:
    """The backend named by ``[queue] subsystem``; imported here, not at the top, so each process
    pulls in only its own backend's library (SQLAlchemy, stomp.py).  Only the inline backend
    needs the plugins: it runs handlers inside ``enqueue``."""
    # Every import below is local on purpose (hence the noqa): a process imports only its backend.
    config = runtime.config
    subsystem = config.queue.subsystem
    if subsystem == "memory":
        from statusq.queues.memory import MemoryQueueManager  # noqa: PLC0415

        return MemoryQueueManager(config)  # a fresh broker: in-process only
    if subsystem == "inline":
        from statusq.processor import ItemProcessor  # noqa: PLC0415
        from statusq.queues.inline import InlineQueueManager  # noqa: PLC0415
        from statusq.retry import RetryPolicy, resolve_policies  # noqa: PLC0415

        policies = resolve_policies(config, runtime.registry, timed=False)  # no SIGALRM in the app
        processor = ItemProcessor(
            runtime.registry, runtime.sites, RetryPolicy.from_config(config.queue), transports=policies
        )
        inline = InlineQueueManager(config, processor.process)
        processor.keys = lambda: inline.unique_keys
        return inline
    if subsystem == "stomp":
        from statusq.queues.stomp import StompQueueManager  # noqa: PLC0415

        return StompQueueManager(config)
    from statusq.queues.db import DBQueueManager  # noqa: PLC0415

    return DBQueueManager(config)


def connect(config_path: str | os.PathLike[str] | None = None) -> QueueManager:
    """The queue manager an application enqueues with.

    ``config_path`` defaults to ``$STATUSQ_CONFIG``, then ``/etc/statusq/statusq.toml``.
    """
    return Runtime.from_path(config_path).queue_manager()
