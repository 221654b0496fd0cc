"""The STOMP backend's backlog and dead letters, as ActiveMQ's statistics plugin tells them.

An ActiveMQ with ``<statisticsBrokerPlugin/>`` (``scripts/servers/activemq.sh`` writes it) answers
a SEND to ``/queue/ActiveMQ.Statistics.Destination.<queue>`` that carries a ``reply-to``: one
MapMessage per matching queue, which a subscription with ``transformation: jms-map-json`` receives
as JSON.  With the ``ActiveMQ.Statistics.Destination.List.End.With.Null`` header the plugin ends
each answer with an empty map, so the end of a reply is known without waiting for a timeout.

What the figures mean, measured on ActiveMQ 5.17 (5 messages queued, a consumer holding 3 of
them prefetched and unacked, one more sent with ``AMQ_SCHEDULED_DELAY``): ``size`` was 5 and
``inflightCount`` 3.  So ``size`` counts every message not yet acked, in-flight ones included,
and a scheduled message (a retry waiting out its backoff) is in no queue until it is due:
``ready = size - inflightCount``, ``in_flight = inflightCount`` (dispatched to a consumer, a
prefetched one included, not yet acked), ``delayed`` unknown.

Which queues: a daemon started with ``--group`` asks for exactly the destinations its workers
subscribe to; one serving every group cannot name them (the supervisor loads no plugin, so it
does not know the groups), and asks with the ``>`` wildcard, keeping the queues under
``basename``.  ActiveMQ's wildcards split names at ``.``, and ours are split by ``/``, so no
narrower wildcard selects them: on a broker with many other queues, start the daemon with
``--group`` to keep the answer short.  The dead-letter destination is always asked by name.

Each load opens its own short-lived connection: the supervisor forks workers, and a connection
kept open would be copied into each of them.  RabbitMQ has nothing like the plugin over STOMP
(its queue depths are in the management API): there the backlog series are left out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from statusq.errors import StatusqError
from statusq.metrics.collector import Backlog
from statusq.queues.stomp.destinations import Destinations
from statusq.queues.stomp.link import StompLink
from statusq.queues.stomp.storedelays import StoreDelays

if TYPE_CHECKING:
    from statusq.config import Config, StompConfig

log = logging.getLogger(__name__)

STATS_PREFIX = "/queue/ActiveMQ.Statistics.Destination."
END_LIST = "ActiveMQ.Statistics.Destination.List.End.With.Null"
REPLY_TO = "/temp-queue/statusq-statistics"
LINK_NAME = "metrics-statistics"
#: Longest wait for the broker: the connection, then all the answers.  A scrape must not hang.
TIMEOUT = 5.0
#: A broker without the plugin stores each query as a plain (non-persistent) message: it
#: expires after this long rather than pile up once per backlog_ttl.
_QUERY_TTL_MS = 60_000
UNKNOWN = Backlog(ready=None, delayed=None, in_flight=None, dead=None)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's answer: its name as statusq writes it (``/queue/...``) and two counts."""

    destination: str
    size: int
    in_flight: int


def parse_reply(body: bytes) -> QueueStats | None:
    """One destination's reply of the plugin; None for the end-of-list marker.  Raises
    ValueError for anything else."""
    found = parse_map(body)
    if found is None:
        return None
    try:
        return QueueStats(_logical(str(found["destinationName"])), int(found["size"]), int(found["inflightCount"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"statistics without destinationName, size or inflightCount (have: {sorted(found)})") from exc


def parse_map(body: bytes) -> dict[str, Any] | None:
    """Any reply of the plugin (a destination's, the broker's), as ``jms-map-json`` renders a
    MapMessage: its entries as a dict; None for the end-of-list marker.

    XStream writes each entry as ``{"string": key, "long": n}``, a string value as
    ``{"string": [key, value]}``, and a map of a single entry as an object rather than a list.
    Raises ValueError for anything else.
    """
    try:
        data = json.loads(body)
        entries = data["map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a jms-map-json map: {body[:200]!r}") from exc
    if not entries:
        return None
    if not isinstance(entries, dict):
        raise ValueError(f"not a jms-map-json map: {body[:200]!r}")
    found: dict[str, Any] = {}
    items = entries.get("entry", [])
    for entry in items if isinstance(items, list) else [items]:
        key = entry.get("string") if isinstance(entry, dict) else None
        if isinstance(key, list) and len(key) == 2:
            found[str(key[0])] = key[1]
        elif isinstance(key, str):
            found[key] = next((v for k, v in entry.items() if k != "string"), None)
    return found


def _logical(name: str) -> str:
    """``queue://statusq/main`` (ActiveMQ's name) → ``/queue/statusq/main`` (ours)."""
    for kind in ("queue", "topic"):
        if name.startswith(f"{kind}://"):
            return f"/{kind}/" + name.removeprefix(f"{kind}://")
    return name


@dataclass(frozen=True, slots=True)
class Plan:
    """What to ask for, and which answers are this daemon's backlog."""

    queries: list[str]  # what follows STATS_PREFIX: physical queue names, or ">"
    dead_letters: str
    served: frozenset[str] | None  # None: every queue under basename
    basename: str

    def serves(self, destination: str) -> bool:
        if destination == self.dead_letters:
            return False
        if self.served is not None:
            return destination in self.served
        return destination.startswith(self.basename)


def plan(stomp: StompConfig, groups: Iterable[str] | None) -> Plan:
    dead = stomp.dead_letter_destination
    if groups:
        served = Destinations(stomp.basename, stomp.breakout, stomp.shards).for_groups(set(groups))
        queries = [_physical(d) for d in served]
        return Plan([*queries, _physical(dead)], dead, frozenset(served), stomp.basename)
    return Plan([">", _physical(dead)], dead, None, stomp.basename)


def _physical(destination: str) -> str:
    return destination.removeprefix("/queue/")


def backlog_of(answers: Iterable[QueueStats], plan: Plan) -> Backlog:
    """The series' values.  A queue the broker does not have yet is not in the answers: 0."""
    seen = {a.destination: a for a in answers}  # the wildcard and a name may both answer for one
    ours = [a for a in seen.values() if plan.serves(a.destination)]
    dead = seen.get(plan.dead_letters)
    return Backlog(
        ready=sum(max(0, a.size - a.in_flight) for a in ours),
        delayed=None,
        in_flight=sum(a.in_flight for a in ours),
        dead=dead.size if dead is not None else 0,
    )


class _QuietConnects(logging.Filter):
    """StompLink and stomp.py log each connect at INFO, right for a worker's one connection; the
    supervisor's come once per ``backlog_ttl``.  Dropped for the thread asking, warnings kept."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.thread not in self.threads


_QUIET = _QuietConnects()
for _name in ("stomp.py", "statusq.queues.stomp.link"):
    logging.getLogger(_name).addFilter(_QUIET)


def delayed_in_store(config: Config) -> int | None:
    """Delayed items and retries waiting in the shared store (``[queue.stomp] delays``, the default
    on ActiveMQ), every destination's: None where they wait in the scheduler, in no queue's count."""
    if config.queue.stomp.delays == "broker":
        return None
    try:
        found = StoreDelays(config.queue.stomp.delays, config.db_url).summary()
    except StatusqError as exc:  # the shared store is down: the broker's counts are still worth having
        log.warning("delayed items in the shared store not counted: %s", exc)
        return None
    return 0 if found is None else found.waiting  # None: nothing ever held


class ActiveMQBacklog:
    """The loader for :class:`~statusq.metrics.collector.Cached`: one connection per call.

    ``groups`` gives the groups the daemon serves (None: all), from the supervisor's state file;
    LookupError while that is not written yet (the first second of a daemon): the series are
    left out then, without a warning.  Any other failure raises; Cached logs it and leaves the
    series out.
    """

    def __init__(self, config: Callable[[], Config], groups: Callable[[], Iterable[str] | None]) -> None:
        self.config = config
        self.groups = groups
        self.rabbitmq = False  # learnt from the broker's CONNECTED frame: never ask again

    def __call__(self) -> Backlog:
        stomp = self.config().queue.stomp
        if self.rabbitmq or stomp.flavor == "rabbitmq":
            return UNKNOWN
        try:
            groups = self.groups()
        except LookupError:
            return UNKNOWN
        found = self._ask(stomp, plan(stomp, groups))
        return dataclasses.replace(found, delayed=delayed_in_store(self.config())) if found.ready is not None else found

    def _ask(self, stomp: StompConfig, wanted: Plan) -> Backlog:
        timeout = min(stomp.receipt_timeout, TIMEOUT)
        link = StompLink(stomp.model_copy(update={"receipt_timeout": timeout, "heartbeats": (0, 0)}), LINK_NAME)
        me = threading.get_ident()
        _QUIET.threads.add(me)
        try:
            link.connect()
            if link.flavor == "rabbitmq":  # which refuses /temp-queue/ subscriptions, too
                self.rabbitmq = True
                return UNKNOWN
            link.subscribe(REPLY_TO, "auto", {"transformation": "jms-map-json"})
            expires = str(int(time.time() * 1000) + _QUERY_TTL_MS)
            headers = {"reply-to": REPLY_TO, END_LIST: "", "expires": expires}
            for query in wanted.queries:
                link.send(STATS_PREFIX + query, b"", headers, confirm=False)
            return backlog_of(_answers(link, len(wanted.queries), timeout), wanted)
        finally:
            link.close()
            _QUIET.threads.discard(me)


def _answers(link: Any, ends: int, timeout: float) -> list[QueueStats]:
    """Replies until ``ends`` end-of-list markers came; TimeoutError past ``timeout``."""
    found: list[QueueStats] = []
    deadline = time.monotonic() + timeout
    while ends:
        try:
            frame = link.frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(
                f"no answer from ActiveMQ's statistics plugin within {timeout:g}s "
                "(is <statisticsBrokerPlugin/> in the broker's config?)"
            ) from None
        answer = parse_reply(frame.body)
        if answer is None:
            ends -= 1
        else:
            found.append(answer)
    return found
