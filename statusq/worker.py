"""Assembles one worker process: runtime, consumer, processor, listener, master.

The process around it (signals, state file, title, the supervisor's lifeline) is set up by
:mod:`statusq.daemon.child`; this module only wires the pieces that handle items.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from statusq.config import Config
from statusq.control import ControlActions, ControlManager, control_settings
from statusq.defaults import BUILTIN_GROUPS, DEFAULT_GROUP, EXIT_RESTART
from statusq.dispatcher import dispatch_hooks, dispatcher_manager
from statusq.errors import ConfigError, StatusqError
from statusq.flow import FlowGate
from statusq.io.concurrent import ConcurrentListener
from statusq.io.listener import QueueListener
from statusq.io.manager import IoManager
from statusq.io.master import IoMaster
from statusq.io.relaythread import RelayThread
from statusq.limits import SoftMemoryLimit
from statusq.middleware import Middleware
from statusq.pauses import PauseGate
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer, ControlChannel, QueueManager, Subscription
from statusq.queues.cancels import CancelView
from statusq.queues.db.flow import FlowStore
from statusq.queues.db.pauses import Pause, PauseStore
from statusq.queues.db.removals import RemovalStore
from statusq.removals import SiteRemovals
from statusq.retry import Policies, RetryPolicy, resolve_policies
from statusq.runtime import Runtime
from statusq.xmpp import xmpp_managers

if TYPE_CHECKING:
    from statusq.metrics.hooks import MetricsHooks
    from statusq.metrics.worker import WorkerMetrics

log = logging.getLogger(__name__)

#: Builds the control actions of a worker once its master exists.
ActionsFactory = Callable[[Runtime, IoMaster], ControlActions]


class GroupError(StatusqError):
    """``--group`` names a group no plugin registers a handler in."""

    exit_code = os.EX_USAGE


def check_groups(runtime: Runtime, groups: set[str] | None) -> None:
    """Refuse groups no handler is registered in, and handlers registered in another group than
    the config routes their transport to (producers read the config, not the plugins: such a
    handler's items would go where its workers never look).  Only known once the plugins are
    loaded."""
    check_routes(runtime)
    unknown = (groups or set()) - runtime.registry.groups()
    if unknown:
        raise GroupError(
            f"--group: no handler registered in group(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(runtime.registry.groups())) or 'none'})"
        )


def check_routes(runtime: Runtime) -> None:
    config = runtime.config
    unknown = sorted(set(config.transports) - runtime.registry.transports() - set(BUILTIN_GROUPS))
    if unknown:
        # Caught here, not at config load: only a worker loads the plugins that name transports.
        raise ConfigError(
            f"unknown transport {unknown[0]!r}: no plugin registers it "
            f"(registered: {', '.join(sorted(runtime.registry.transports())) or 'none'})",
            file=config.source,
            key=f"transports.{unknown[0]}",
        )
    check_time_limits(config, resolve_policies(config, runtime.registry))
    for transport in sorted(runtime.registry.transports()):
        registration = runtime.registry.get(transport)
        assert registration is not None
        routed = config.group_of(transport)
        if registration.group != routed:
            raise ConfigError(
                f"plugin {registration.plugin!r} registers transport {transport!r} in group "
                f"{registration.group!r}, but producers route it to group {routed!r}: add "
                f'[transports.{transport}] group = "{registration.group}"',
                file=config.source,
                key=f"transports.{transport}.group",
            )


def check_time_limits(config: Config, policies: Policies) -> None:
    """A DB claim must outlive every transport's items (config.py checks the config's own
    limits at load; a plugin's ``register_handler(time_limit=...)`` is only known here)."""
    grace = config.daemon.time_limit_grace
    for transport, policy in policies.items():
        limit = policy.time_limit
        if limit and config.queue.claim_timeout <= limit + grace:
            raise ConfigError(
                f"must be longer than transport {transport!r}'s time_limit + daemon.time_limit_grace "
                f"({limit:g}s + {grace:g}s), or its items are handed to a second worker while they run",
                file=config.source,
                key="queue.claim_timeout",
            )


def subscription_for(runtime: Runtime, groups: set[str] | None) -> Subscription:
    """Transports of the chosen groups; the default group also sweeps unknown transports."""
    registry = runtime.registry
    if groups is None:
        # Everything; the processor dead-letters what has no handler.  A broker subscribes to
        # the destinations of the groups handlers are registered in.
        return Subscription(groups=frozenset(registry.groups() | {DEFAULT_GROUP}))
    return Subscription(
        transports=frozenset(registry.transports(groups)),
        catch_unknown=DEFAULT_GROUP in groups,
        known_transports=frozenset(registry.transports()),
        groups=frozenset(groups),
    )


@dataclass(frozen=True, slots=True)
class WorkerParts:
    """What the process around a worker needs to reach: the loop, and whose claims it makes."""

    master: IoMaster
    consumer: Consumer
    memory_limit: SoftMemoryLimit
    #: The metrics hook of this worker (None under ``[metrics] enabled = false``).
    metrics: MetricsHooks | None = None
    #: Each transport's retry and time-limit policy, as the processor applies them.
    policies: Policies | None = None


def build_worker(
    runtime: Runtime,
    *,
    groups: set[str] | None = None,
    idle_exit: float | None = None,
    middleware: list[Middleware] | None = None,
    extra_managers: list[IoManager] | None = None,
    actions: ActionsFactory | None = None,
) -> WorkerParts:
    """``middleware``: the process's own (state file, title), run before the metrics' and the
    dispatcher's, after the plugins' (which joined the chain as they were loaded)."""
    config = runtime.config
    metrics = worker_metrics(runtime) if config.metrics.enabled else None
    chain = runtime.middleware
    for one in [*(middleware or []), *([metrics.hooks] if metrics else []), dispatch_hooks(config)]:
        chain.add(one)
    queue_manager = runtime.queue_manager()
    policies = resolve_policies(config, runtime.registry)
    processor = ItemProcessor(
        runtime.registry,
        runtime.sites,
        RetryPolicy.from_config(config.queue),
        item_time_limit=config.daemon.time_limit,
        middleware=chain,
        transports=policies,
        keys=lambda: queue_manager.unique_keys,
        cancels=cancel_view(queue_manager),
        max_body=config.queue.max_body,
        pauses=(gate := pause_gate(runtime)),
        flow=(flow := flow_gate(runtime)),
    )
    removals = site_removals(runtime)  # read before the first item, as the pauses are
    chain.add(FlowClosing(flow))
    consumer = queue_manager.subscribe(subscription_for(runtime, groups))
    channel = queue_manager.control_channel()  # its own subscription: not behind the items
    listener = queue_listener(runtime, consumer, processor, channel)
    log.info(
        "worker ready: %d transport(s) %s, %d site file(s), backend %s",
        len(runtime.registry),
        sorted(runtime.registry.transports()),
        len(runtime.sites.names),
        config.queue.subsystem,
    )
    memory_limit = SoftMemoryLimit(config.daemon.soft_memory_limit)
    dispatcher = dispatcher_manager(config, runtime.registry.queues, queue_manager)
    xmpp = xmpp_managers(config, runtime.sites, runtime.registry, queue_manager, groups)  # [] unless serving "xmpp"
    managers = [
        listener,
        *stomp_relays(config, queue_manager),
        *([metrics.manager] if metrics else []),
        *(extra_managers or []),
        *([dispatcher] if dispatcher else []),
        *xmpp,
    ]
    master = IoMaster(managers, memory_limit=memory_limit, idle_exit=idle_exit, middleware=chain)
    for relay in (m for m in managers if isinstance(m, RelayThread)):
        relay.stopping = lambda: master.stopping
    if isinstance(listener, ConcurrentListener):
        listener.on_abandoned = lambda: master.request_stop(EXIT_RESTART)
    applied = (actions or lone_actions)(runtime, master)
    applied.pauses = gate.refresh
    # Always, channel or not: it keeps the shared store's site removals applied.  First: a turn
    # polls its due managers in order, and a command that came in during an item must be applied
    # before the listener takes the next one (QueueListener.more stops its burst).
    master.managers.insert(0, control_manager(runtime, channel, master, applied, removals))
    return WorkerParts(master, consumer, memory_limit, metrics.hooks if metrics else None, policies)


def stomp_relays(config: Config, manager: QueueManager) -> list[IoManager]:
    """A broker's relays: the transactional outbox's, where one is configured, and the delayed
    items' from the shared store, unless delays wait on the broker (``[queue.stomp] delays``)."""
    stomp = config.queue.stomp
    if config.queue.subsystem != "stomp":
        return []
    relays: list[IoManager] = []
    send = getattr(manager, "relay_batch", None)  # StompQueueManager's; not imported by a DB worker
    if stomp.outbox_url is not None and send is not None:
        from statusq.io.outbox import OutboxRelay  # noqa: PLC0415 - SQLAlchemy: only where an outbox is configured

        relays.append(OutboxRelay(stomp.outbox_url, send, stomp.outbox_poll, stomp.receipt_timeout + 1))
    # StompQueueManager's, looked up as relay_batch is (the worker imports no backend); its
    # flavor() tells the relay, for delays = "auto", what its consumer connected to
    delays, flavor = getattr(manager, "delays", None), getattr(manager, "flavor", None)
    if stomp.delays != "broker" and delays is not None and flavor is not None:
        from statusq.io.delays import DelayRelay  # noqa: PLC0415 - SQLAlchemy: only on a broker

        relays.append(DelayRelay(delays, stomp, stomp.delay_poll, flavor))
    return relays


def cancel_view(manager: QueueManager) -> Callable[[], CancelView] | None:
    """The worker's copy of the remembered cancellations (None: the backend remembers none).
    Opened and read at boot, as the pauses are: opened at the first item (its tables made then,
    DDL on PostgreSQL), it held that item, and with it a whole claimed batch of urgent ones,
    while the other workers ran hundreds (tests/e2e/test_priorities.py saw positions 421-448).
    If the store cannot be read now, the first item tries again."""
    if type(manager)._open_cancels is QueueManager._open_cancels:
        return None
    opened: list[CancelView] = []

    def view() -> CancelView:
        if not opened:
            opened.append(CancelView(manager.cancel_store))
        return opened[0]

    try:
        view().read()
    except StatusqError as exc:
        log.warning("cannot read the remembered cancellations yet (tried again at the first item): %s", exc)
    return view


def pause_gate(runtime: Runtime) -> PauseGate:
    """The worker's view of the shared store's pauses (the store opened at the first read, and
    again after a failed one: the database may have been down when the worker started)."""
    holder: list[PauseStore] = []

    def load() -> list[Pause]:
        if not holder:
            holder.append(runtime.pause_store())
        try:
            return holder[0].list()
        except StatusqError:
            holder.pop().close()
            raise

    queue = runtime.config.queue
    gate = PauseGate(load, recheck=queue.pause_recheck, hold=queue.pause_hold)
    gate.read()
    return gate


def site_removals(runtime: Runtime) -> SiteRemovals:
    """The worker's copy of the shared store's removed sites, read now, at boot (the store
    opened at the first read, and again after a failed one, as the pauses')."""
    holder: list[RemovalStore] = []

    def load() -> set[str]:
        if not holder:
            holder.append(runtime.removal_store())
        try:
            return set(holder[0].list())
        except StatusqError:
            holder.pop().close()
            raise

    removals = SiteRemovals(load, runtime.sites, recheck=runtime.config.queue.site_recheck)
    removals.read()
    return removals


class FlowClosing(Middleware):
    """Gives back the worker's concurrency slots when it stops (a killed one's expire)."""

    def __init__(self, gate: FlowGate) -> None:
        self.gate = gate

    def before_worker_shutdown(self) -> None:
        self.gate.close()


def flow_gate(runtime: Runtime) -> FlowGate:
    """The worker's rate limits and caps.  The store is opened at boot where a limit is
    configured (its tables made then, not during the first item, as the pauses' are), else
    only if a site file brings one."""
    url = runtime.config.db_url
    gate = FlowGate(runtime.config, lambda: FlowStore.open(url))
    if gate.limits():
        try:
            gate.store()
        except StatusqError as exc:
            log.warning("cannot open the flow-control store yet (tried again at the first item): %s", exc)
    return gate


def has_async_handlers(runtime: Runtime) -> bool:
    registry = runtime.registry
    return any(
        inspect.iscoroutinefunction(getattr(registration.handler_class, "handle", None))
        for registration in (registry.get(t) for t in registry.transports())
        if registration is not None
    )


def queue_listener(
    runtime: Runtime, consumer: Consumer, processor: ItemProcessor, channel: ControlChannel | None
) -> QueueListener:
    """One item at a time in the loop's own thread (concurrency 1, sync handlers only: the path
    tuned for no-op throughput), else the concurrent listener (threads, an event loop)."""
    config = runtime.config
    concurrency = config.daemon.concurrency
    if concurrency == 1 and not has_async_handlers(runtime):
        return QueueListener(consumer, processor, config.queue.poll_max, control=channel)
    log.info("up to %d item(s) in hand at once", concurrency)
    return ConcurrentListener(
        consumer,
        processor,
        config.queue.poll_max,
        channel,
        concurrency=concurrency,
        cap=config.concurrency_of,
        # Half the supervisor's grace: the worker settles a stuck item before it is SIGKILLed.
        abandon_after=config.daemon.time_limit_grace / 2,
    )


def worker_metrics(runtime: Runtime) -> WorkerMetrics | None:
    """Imported here, not at the top: prometheus-client only where ``[metrics] enabled``."""
    from statusq.metrics.worker import worker_metrics as build  # noqa: PLC0415

    return build(runtime.config.metrics, runtime.registry.transports())


def build_master(
    runtime: Runtime,
    *,
    groups: set[str] | None = None,
    idle_exit: float | None = None,
    middleware: list[Middleware] | None = None,
    extra_managers: list[IoManager] | None = None,
) -> IoMaster:
    """The loop of a worker that acts on its own (tests, embedding)."""
    parts = build_worker(
        runtime, groups=groups, idle_exit=idle_exit, middleware=middleware, extra_managers=extra_managers
    )
    return parts.master


def lone_actions(runtime: Runtime, master: IoMaster) -> ControlActions:
    """Control commands as a worker with no supervisor applies them itself."""
    return ControlActions(
        reload=runtime.sites.reload_all,
        restart=lambda: master.request_stop(EXIT_RESTART),
        shutdown=master.request_stop,
    )


def control_manager(
    runtime: Runtime,
    channel: ControlChannel | None,
    master: IoMaster,
    actions: ControlActions | None = None,
    removals: SiteRemovals | None = None,
) -> ControlManager:
    """Applies control commands between items; a supervisor's workers pass ``actions`` that
    forward the process-wide ones (restart, shutdown) to it."""
    settings = control_settings(runtime.config)
    return ControlManager(
        channel,
        runtime.sites,
        actions or lone_actions(runtime, master),
        channel=settings.channel,
        secret=settings.secret,
        max_age=settings.max_age,
        middleware=runtime.middleware,
        removals=removals,
    )
