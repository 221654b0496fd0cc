"""Where a delivery becomes a handled item: site switch, handler choice, outcome.

Every backend hands its deliveries here, so attempts, backoff and dead-lettering behave the same
on SQLite, PostgreSQL and a STOMP broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from statusq import codec
from statusq.config import SiteConfig
from statusq.errors import DecodeError, ItemTimeLimitExceeded
from statusq.flow import FlowGate
from statusq.handler import QueueHandler
from statusq.item import Delivery, QueueItem
from statusq.limits import ItemTimer
from statusq.middleware import MiddlewareChain
from statusq.outcome import Failure, Outcome, Raised, Reject, Result, Retry
from statusq.pauses import PauseGate
from statusq.produce import KEY_HEADER
from statusq.queues.base import Consumer
from statusq.queues.cancels import CancelView
from statusq.queues.keys import UniqueKeys
from statusq.registry import HandlerRegistry
from statusq.retry import Policies, RetryPolicy, TransportPolicy
from statusq.sites import SiteTable, site_context

log = logging.getLogger(__name__)

#: The reason of a duplicate delivery of a keyed item that already succeeded (acked, not run).
DUPLICATE = "already done: duplicate delivery"


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 1-2 us, once per item
class Call:
    """An item ready for its handler: what :meth:`ItemProcessor.prepare` found."""

    handler: QueueHandler
    item: QueueItem
    site: SiteConfig
    policy: TransportPolicy


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failed(
    delivery: Delivery, policy: RetryPolicy, reason: str, retryable: bool, kind: Failure, duration: float = 0.0
) -> Result:
    """A failed attempt: retried after the backoff, or dead once it was the last allowed."""
    if not retryable:
        return Result(Outcome.DEAD, reason, duration, kind=kind)
    if policy.gives_up(delivery.attempt):
        return Result(Outcome.DEAD, f"{reason} (gave up after {delivery.attempt} attempts)", duration, kind=kind)
    return Result(Outcome.RETRY, reason, duration, policy.backoff(delivery.attempt), kind)


def outcome_of(exc: BaseException, delivery: Delivery, policy: RetryPolicy, duration: float) -> Result:
    """What an exception out of a handler means: Reject, dead now; Retry, a counted attempt
    retried after its own delay (None: the backoff); a time limit or anything else, a failed
    attempt."""
    if isinstance(exc, Reject):
        reason = f"rejected: {exc.reason or 'no reason given'}"
        return Result(Outcome.DEAD, reason, duration, kind=Failure.HANDLER_REJECT)
    if isinstance(exc, Retry):
        reason = exc.reason or "the handler asked for a retry"
        if exc.delay is None or policy.gives_up(delivery.attempt):
            return failed(delivery, policy, reason, True, Failure.HANDLER_RETRY, duration)
        return Result(Outcome.RETRY, reason, duration, exc.delay, Failure.HANDLER_RETRY)
    kind = Failure.TIME_LIMIT if isinstance(exc, ItemTimeLimitExceeded) else Failure.HANDLER_ERROR
    return failed(delivery, policy, _describe(exc), True, kind, duration)


class ItemProcessor:
    """``policy`` and ``item_time_limit``: for transports ``transports`` does not name (as
    :func:`statusq.retry.resolve_policies` builds it from config and registrations)."""

    def __init__(
        self,
        registry: HandlerRegistry,
        sites: SiteTable,
        policy: RetryPolicy,
        *,
        item_time_limit: float = 0.0,
        middleware: MiddlewareChain | None = None,
        transports: Policies | None = None,
        clock: Callable[[], float] = time.time,
        keys: Callable[[], UniqueKeys] | None = None,
        cancels: Callable[[], CancelView] | None = None,
        max_body: int = 0,
        pauses: PauseGate | None = None,
        flow: FlowGate | None = None,
    ) -> None:
        #: Rate limits and concurrency caps (None: none; a process without a shared store).
        self.flow = flow
        #: ``[queue] max_body``: a larger body is dead-lettered before it is decoded (0: no limit).
        self.max_body = max_body
        #: The backend's remembered cancellations (None: the backend has none).
        self.cancels = cancels
        self.registry = registry
        #: The backend's unique keys, opened when the first keyed item comes (None: keys unsupported).
        self.keys = keys
        self.pauses = pauses  # None: nothing is ever paused (a process without a shared store)
        self.clock = clock  # what an item's expires_at is read against
        self.sites = sites
        default = TransportPolicy(policy, item_time_limit)
        self.policies = transports if transports is not None else Policies(default)
        self._timer = ItemTimer(item_time_limit)
        # Always a chain: it isolates each hook, so one that raises cannot keep an item unsettled.
        self.middleware = middleware if middleware is not None else MiddlewareChain()

    def process(self, delivery: Delivery, consumer: Consumer) -> Result:
        self.middleware.before_item(delivery)
        try:
            result = self._run(delivery)
        except Exception as exc:
            result = self.internal_error(delivery, exc)
        self.finish(delivery, consumer, result)
        return result

    def internal_error(self, delivery: Delivery, exc: Exception) -> Result:
        """A bug of ours, not the handler's (those are caught in :meth:`call`): keep the worker
        alive and the item counted, so a systematic failure ends in the dead-letter queue."""
        log.error("processing failed outside the handler, id=%s", delivery.id, exc_info=exc)
        policy = self.policies.of(delivery.transport).retry
        return failed(delivery, policy, f"internal error: {_describe(exc)}", True, Failure.INTERNAL)

    def finish(self, delivery: Delivery, consumer: Consumer, result: Result) -> None:
        """Settle the item with the consumer, then tell the middleware (the loop's thread only)."""
        if self.flow is not None:
            self.flow.release(delivery)  # its concurrency slot, before the settlement's write
        self._settle(delivery, consumer, result)
        self.middleware.after_item(delivery, result)

    def _run(self, delivery: Delivery) -> Result:
        prepared = self.prepare(delivery)
        if isinstance(prepared, Result):
            return prepared
        return self.call(delivery, prepared)

    def prepare(self, delivery: Delivery) -> Call | Result:
        """Everything before the handler runs: the policy, the site, the handler, the decoded
        item; or the result of an item that cannot run.  The concurrent listener calls it in the
        loop's thread, then hands the call to a thread or the event loop."""
        if KEY_HEADER in delivery.headers and self._already_done(delivery):
            return Result(Outcome.DROPPED, DUPLICATE)
        if self.cancels is not None and (dropped := self.cancels().dropped(delivery)) is not None:
            log.info(
                "not run: %s (id=%s site=%s transport=%s)", dropped, delivery.id, delivery.site, delivery.transport
            )
            return Result(Outcome.DROPPED, dropped)
        # Then: a paused item is held whatever else is true of it (not even expired, not
        # dead-lettered); the rules below apply once it is resumed.
        gate = self.pauses
        if gate is not None and (pause := gate.held(delivery.site, delivery.transport)) is not None:
            return Result(Outcome.HOLD, pause.describe(), delay=gate.hold)
        if delivery.expires_at is not None and delivery.expires_at <= self.clock():
            when = datetime.fromtimestamp(delivery.expires_at, UTC).isoformat(timespec="seconds")
            return Result(Outcome.DEAD, f"expired: not started by {when}", kind=Failure.EXPIRED)
        policy = self.policies.of(delivery.transport)
        if policy.expires and delivery.enqueued_at + policy.expires <= self.clock():
            when = datetime.fromtimestamp(delivery.enqueued_at + policy.expires, UTC).isoformat(timespec="seconds")
            reason = f"expired: not started by {when} (transport {delivery.transport}: expires {policy.expires:g}s)"
            return Result(Outcome.DEAD, reason, kind=Failure.EXPIRED)
        if delivery.attempt > policy.retry.max_attempts:
            # The previous attempt never reported back: its worker died or hung on this item.
            last = f"; last error: {delivery.error}" if delivery.error else ""
            return Result(
                Outcome.DEAD,
                f"gave up after {delivery.attempt - 1} attempts, the last of which never "
                f"finished (worker died or was killed?){last}",
                kind=Failure.INTERNAL,
            )
        lookup = self.sites.lookup(delivery.site)
        if lookup.site is None:
            problem = lookup.problem or "site unavailable"
            return failed(delivery, policy.retry, problem, lookup.retryable, Failure.SITE_UNAVAILABLE)
        if not delivery.transport:
            return Result(
                Outcome.DEAD,
                "cannot determine the item's transport: no statusq-transport header, and it was not "
                "sent to a breakout destination",
                kind=Failure.BAD_ITEM,
            )
        handler = self.registry.handler(delivery.transport)
        if handler is None:
            return Result(
                Outcome.DEAD, f"no handler registered for transport {delivery.transport!r}", kind=Failure.NO_HANDLER
            )
        if self.max_body and len(delivery.body) > self.max_body:
            reason = f"body of {len(delivery.body):,} bytes is over [queue] max_body ({self.max_body:,}): not decoded"
            return Result(Outcome.DEAD, reason, kind=Failure.BAD_ITEM)
        try:
            payload = codec.decode(delivery.body, delivery.content_type)
        except DecodeError as exc:
            return Result(Outcome.DEAD, f"cannot decode {delivery.content_type} body: {exc}", kind=Failure.BAD_ITEM)
        item = QueueItem(
            id=delivery.id,
            site=delivery.site,
            transport=delivery.transport,
            payload=payload,
            headers=delivery.headers,
            attempt=delivery.attempt,
            enqueued_at=datetime.fromtimestamp(delivery.enqueued_at, UTC),
            content_type=delivery.content_type,
            priority=delivery.priority,
        )
        # Last: a rate limit's token or a cap's slot is spent only on an item that will run now.
        if self.flow is not None and (held := self.flow.admit(delivery, item, handler, lookup.site)) is not None:
            return held
        return Call(handler, item, lookup.site, policy)

    def call(self, delivery: Delivery, call: Call) -> Result:
        """Run a sync handler under the item's site and time limit (SIGALRM: the main thread's;
        in a pool thread the listener's watchdog interrupts it instead)."""
        started = time.perf_counter()
        try:
            with site_context(call.site), self._timer(call.policy.time_limit):
                done = call.handler.handle(call.item)
        except (Exception, ItemTimeLimitExceeded) as exc:
            return self.outcome(delivery, call, None, exc, time.perf_counter() - started)
        return self.outcome(delivery, call, done, None, time.perf_counter() - started)

    def outcome(
        self, delivery: Delivery, call: Call, done: object, exc: BaseException | None, duration: float
    ) -> Result:
        """What a handler's return value or exception means (sync and async handlers alike)."""
        if exc is not None:
            log.debug("handler raised", exc_info=exc)
            r = outcome_of(exc, delivery, call.policy.retry, duration)
            return Raised(r.outcome, r.reason, r.duration, r.delay, r.kind, exc)
        if done is False:
            return failed(delivery, call.policy.retry, "handler returned False", True, Failure.HANDLER_FALSE, duration)
        return Result(Outcome.DONE, None, duration)

    def timed_out(self, delivery: Delivery, call: Call, duration: float) -> Result:
        """The result of an item whose handler never came back from its time limit."""
        reason = f"handler ran past the time limit of {call.policy.time_limit:g}s and did not stop"
        return failed(
            delivery, call.policy.retry, f"ItemTimeLimitExceeded: {reason}", True, Failure.TIME_LIMIT, duration
        )

    def _already_done(self, delivery: Delivery) -> bool:
        """A keyed item that already succeeded, delivered again (a crash after its handler,
        before its ack): acked, not run."""
        if self.keys is None or not self.keys().is_done(delivery.headers[KEY_HEADER], delivery.id):
            return False
        log.info("not run: already done (a duplicate delivery of keyed item id=%s)", delivery.id)
        return True

    def _settle_key(self, delivery: Delivery, result: Result) -> None:
        """Before the ack: a crash between the two then finds the key done and runs nothing."""
        key = delivery.headers[KEY_HEADER]
        if self.keys is None or result.reason == DUPLICATE:
            return
        keys = self.keys()
        if result.outcome is Outcome.DROPPED:
            keys.release(key, delivery.id)  # cancelled or purged: never ran
        elif result.outcome is Outcome.DONE:
            keys.finish(key, delivery.id)
        elif result.outcome is Outcome.DEAD:
            keys.release(key, delivery.id)  # a dead item no longer holds its key

    def _settle(self, delivery: Delivery, consumer: Consumer, result: Result) -> None:
        if KEY_HEADER in delivery.headers:
            try:
                self._settle_key(delivery, result)
            except Exception:
                log.exception("could not record the unique key of id=%s; settled anyway", delivery.id)
        if result.outcome is Outcome.DROPPED:
            consumer.ack(delivery)  # said why when it was decided (prepare)
            return
        if result.outcome is Outcome.DONE:
            consumer.ack(delivery)
            if log.isEnabledFor(logging.INFO):  # its arguments cost more than the no-op handler
                log.info(
                    "done site=%s transport=%s id=%s attempt=%d %.1fms",
                    delivery.site,
                    delivery.transport,
                    delivery.id,
                    delivery.attempt,
                    result.duration * 1e3,
                )
            return
        self.middleware.before_resend(delivery, result)
        fields = (delivery.site, delivery.transport, delivery.id, delivery.attempt)
        if result.outcome is Outcome.HOLD:
            consumer.defer(delivery, result.delay, result.reason or "")
            log.debug("held site=%s transport=%s id=%s attempt=%d: %s", *fields, result.reason)
        elif result.outcome is Outcome.RETRY:
            consumer.retry(delivery, result.delay, result.reason or "")
            # INFO, not WARNING: a retry is the plan working (a remote server down retries every
            # push to it), and a line per retry at WARNING flooded logs and cost a fifth of a
            # retrying worker's time; the metrics count retries, and a dead letter is an ERROR.
            log.info(
                "retry site=%s transport=%s id=%s attempt=%d in %.1fs: %s",
                *fields,
                result.delay,
                result.reason,
            )
        else:
            consumer.dead_letter(delivery, result.reason or "")
            log.error("dead-lettered site=%s transport=%s id=%s attempt=%d: %s", *fields, result.reason)
