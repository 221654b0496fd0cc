"""Assembles one worker process: runtime, consumer, processor, listener, master."""

from __future__ import annotations

import logging

from statusq.control import ControlActions, ControlManager
from statusq.defaults import DEFAULT_GROUP, EXIT_RESTART
from statusq.hooks import HookChain, ItemHooks
from statusq.io.listener import QueueListener
from statusq.io.manager import IoManager
from statusq.io.master import IoMaster
from statusq.limits import SoftMemoryLimit
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer, Subscription
from statusq.retry import RetryPolicy
from statusq.runtime import Runtime

log = logging.getLogger(__name__)


def subscription_for(runtime: Runtime, groups: set[str] | None) -> Subscription:
    """Transports of the chosen groups; the default group also sweeps unknown transports."""
    registry = runtime.registry
    if groups is None:
        return Subscription()  # everything; the processor dead-letters what has no handler
    return Subscription(
        transports=frozenset(registry.transports(groups)),
        catch_unknown=DEFAULT_GROUP in groups,
        known_transports=frozenset(registry.transports()),
        groups=frozenset(groups),
    )


def build_master(
    runtime: Runtime,
    *,
    groups: set[str] | None = None,
    idle_exit: float | None = None,
    hooks: list[ItemHooks] | None = None,
    extra_managers: list[IoManager] | None = None,
) -> IoMaster:
    config = runtime.config
    queue_manager = runtime.queue_manager()
    processor = ItemProcessor(
        runtime.registry,
        runtime.sites,
        RetryPolicy.from_config(config.queue),
        item_time_limit=config.daemon.time_limit,
        hooks=HookChain(hooks or []),
    )
    consumer = queue_manager.subscribe(subscription_for(runtime, groups))
    listener = QueueListener(consumer, processor, config.queue.poll_max)
    log.info(
        "worker ready: %d transport(s) %s, %d site file(s), backend %s",
        len(runtime.registry),
        sorted(runtime.registry.transports()),
        len(runtime.sites.names),
        config.queue.subsystem,
    )
    master = IoMaster(
        [listener, *(extra_managers or [])],
        memory_limit=SoftMemoryLimit(config.daemon.soft_memory_limit),
        idle_exit=idle_exit,
    )
    master.managers.append(control_manager(runtime, consumer, master))
    return master


def control_manager(runtime: Runtime, consumer: Consumer, master: IoMaster) -> ControlManager:
    """Control commands as a lone worker applies them; a supervisor's workers forward the
    process-wide ones (reload, restart, shutdown) to it instead."""
    stomp = runtime.config.queue.stomp
    actions = ControlActions(
        reload=runtime.sites.reload_all,
        restart=lambda: master.request_stop(EXIT_RESTART),
        shutdown=master.request_stop,
    )
    return ControlManager(consumer, runtime.sites, actions, channel=stomp.control_channel, secret=stomp.control_secret)
