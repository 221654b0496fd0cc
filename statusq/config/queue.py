"""``[queue]`` and its tables ``[queue.stomp]`` and ``[queue.db]``: where items travel and how.

The largest sections, and the only ones a producer needs beside ``[transports]``: kept together
so that the broker's and the database's keys, and the checks between them, read in one place.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from statusq import defaults
from statusq.config.values import Duration, Section, Size


def _server(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value


def _destination_prefix(value: str) -> str:
    if not value.startswith(("/queue/", "/topic/")):
        raise ValueError(f"{value!r} must start with /queue/ or /topic/")
    return value if value.endswith("/") else value + "/"


def _breakout(value: str) -> str:
    parts = value.split("/")
    if not 2 <= len(parts) <= 3 or not all(re.match(p, s) for p, s in zip(_BREAKOUT, parts, strict=False)):
        raise ValueError(f"{value!r} is not group/transport or group/transport/site")
    return value


_BREAKOUT = (defaults.NAME_PATTERN, defaults.NAME_PATTERN, defaults.SITE_PATTERN)


class StompConfig(Section):
    """``[queue.stomp]``: the broker connection and destination layout."""

    servers: list[Annotated[str, AfterValidator(_server)]] = Field(default=["127.0.0.1:61613"], min_length=1)
    username: str | None = None
    password: str | None = None
    vhost: str = "/"
    basename: Annotated[str, AfterValidator(_destination_prefix)] = defaults.STOMP_BASENAME
    #: ``""``: none (TOML has no null).
    control_channel: Annotated[str | None, BeforeValidator(lambda v: v or None)] = defaults.STOMP_CONTROL_CHANNEL
    #: Signs control commands (HMAC-SHA256 with a time and a nonce; statusq.commands).  A daemon
    #: on a broker will not start with a control channel and no secret unless ``control_unsigned``.
    control_secret: str | None = Field(default=None, min_length=16)
    control_unsigned: bool = False
    control_max_age: Duration = Field(default=defaults.CONTROL_MAX_AGE, gt=0)
    dead_letter: str | None = None  # default: basename + "dlq"
    persistent: bool = True
    #: None: follows ``[daemon] concurrency`` (:func:`statusq.defaults.prefetch_for`).
    prefetch: int | None = Field(default=None, ge=1, le=10000)
    #: Heart-beats in ms: we send, we want (0 turns one off).  The broker's, well inside
    #: receipt_timeout, tell a broker that is alive but confirms nothing (throttling: BrokerFull,
    #: no resend) from one that is gone (another server, the SEND once more).
    heartbeats: tuple[int, int] = (10000, 4000)
    breakout: list[Annotated[str, AfterValidator(_breakout)]] = Field(default_factory=list)
    #: Destinations per handler group, an item's chosen by a hash of its site; a worker takes
    #: from each in turn, so one site's flood cannot keep every other site waiting.  Producers
    #: and workers must agree (1: one destination per group, as before 2026-12).
    shards: int = Field(default=defaults.STOMP_SHARDS, ge=1, le=64)
    #: Hot sites (statusq.queues.stomp.hot): a site a worker took this many items of from a
    #: shared destination within ``hot_window`` gets its own destination at that worker, taken
    #: in turn with the shards; 0: never.
    hot_after: int = Field(default=defaults.STOMP_HOT_AFTER, ge=0)
    hot_window: Duration = Field(default=defaults.STOMP_HOT_WINDOW, gt=0)
    hot_cool: Duration = Field(default=defaults.STOMP_HOT_COOL, gt=0)
    hot_sites: int = Field(default=defaults.STOMP_HOT_SITES, ge=1, le=256)
    hot_hold: Duration = Field(default=defaults.STOMP_HOT_HOLD, gt=0)
    confirm_sends: bool = True
    receipt_timeout: Duration = 10.0
    reconnect_delay: Duration = 0.5
    reconnect_delay_max: Duration = 30.0
    flavor: Literal["auto", "activemq", "rabbitmq"] = "auto"
    #: The application's database, holding the transactional outbox (statusq.queues.db.outbox);
    #: None: ``enqueue(..., connection=)`` is refused on STOMP.
    outbox_url: str | None = None
    #: How often a worker looks for committed outbox rows to relay.
    outbox_poll: Duration = Field(default=0.2, gt=0)
    #: Where a delayed item, a retry's backoff and a rate limit's deferral wait: "store", the
    #: shared store at ``[queue] db_url``, relayed by the workers when due; "broker", ActiveMQ's
    #: scheduler or RabbitMQ's holding queues; "auto": the store on ActiveMQ (its scheduler drops
    #: what comes due while its store is full), the broker on RabbitMQ.
    delays: Literal["auto", "broker", "store"] = "auto"
    #: How often a worker looks for delayed rows that came due (its own wake it at their time).
    delay_poll: Duration = Field(default=0.25, gt=0)
    #: RabbitMQ: work queues are declared with ``x-max-priority`` = this (0: without, as before
    #: 2026-12; an existing queue keeps the arguments it was declared with: see the docs).
    max_priority: int = Field(default=defaults.STOMP_MAX_PRIORITY, ge=0, le=255)
    #: RabbitMQ: the type every queue of ours is declared with (``x-queue-type``).  "quorum":
    #: replicated on a cluster's nodes (Raft), no priorities before RabbitMQ 4.0.
    queue_type: Literal["classic", "quorum"] = "classic"

    @model_validator(mode="after")
    def _quorum_on_rabbitmq_only(self) -> StompConfig:
        if self.queue_type != "quorum":
            return self
        if self.flavor == "activemq":
            raise ValueError('queue_type = "quorum" is for RabbitMQ: ActiveMQ (flavor = "activemq") has none')
        if "max_priority" in self.model_fields_set and self.max_priority > 0:
            raise ValueError(
                f'queue_type = "quorum" and max_priority = {self.max_priority}: RabbitMQ quorum queues have no '
                "priorities before 4.0 (they refuse x-max-priority); remove max_priority or set it to 0"
            )
        return self

    @property
    def dead_letter_destination(self) -> str:
        return self.dead_letter or self.basename + "dlq"


class DBConfig(Section):
    """``[queue.db]``: how a worker claims from the database, and how hard SQLite syncs."""

    #: Items one claim may take (one statement), kept in hand in claim order.  None: sized by the
    #: worker from its own pace, up to :data:`statusq.defaults.DB_PREFETCH` (slow items are
    #: claimed one by one, so no worker hoards what another could run).  A number: that many.
    prefetch: int | None = Field(default=None, ge=1, le=10000)
    #: SQLite's ``PRAGMA synchronous`` (WAL mode): "normal" loses nothing on a process crash,
    #: the last commits on a power loss; "full" nothing on either (an fsync per commit).
    sqlite_synchronous: Literal["off", "normal", "full", "extra"] = defaults.SQLITE_SYNCHRONOUS
    #: Control commands travel in a table of the queue's database (statusq.queues.db.control);
    #: with a secret each is signed as on STOMP, without one they are accepted unsigned (whoever
    #: can write that table can write the items' table too).
    control_secret: str | None = Field(default=None, min_length=16)
    control_max_age: Duration = Field(default=defaults.CONTROL_MAX_AGE, gt=0)
    control_poll: Duration = Field(default=defaults.DB_CONTROL_POLL, gt=0)


class QueueConfig(Section):
    subsystem: Literal["db", "stomp", "memory", "inline"] = "db"
    db_url: str | None = None
    max_retries: int = Field(default=defaults.MAX_RETRIES, ge=0, le=1000)
    retry_delay: Duration = defaults.RETRY_DELAY
    retry_delay_max: Duration = defaults.RETRY_DELAY_MAX
    claim_timeout: Duration = defaults.CLAIM_TIMEOUT
    poll_max: Duration = defaults.POLL_MAX
    ack_flush: Duration = Field(default=defaults.ACK_FLUSH, gt=0)
    #: The largest item body (bytes, or "10MB"); 0: no limit.
    max_body: Size = Field(default=defaults.MAX_BODY, ge=0)
    #: Pauses (``statusq pause``): how often a worker re-reads them, how long a held item waits.
    pause_recheck: Duration = Field(default=defaults.PAUSE_RECHECK, gt=0)
    pause_hold: Duration = Field(default=defaults.PAUSE_HOLD, gt=0)
    #: Site removals (``statusq control remove-site``): how often a worker re-reads them.
    site_recheck: Duration = Field(default=defaults.SITE_RECHECK, gt=0)
    #: Rate limits and concurrency caps (statusq.flow): a slot's lease, how long a capped item
    #: waits, the longest a rate-limited item waits before it is checked again.
    flow_lease: Duration = Field(default=defaults.FLOW_LEASE, ge=1)
    cap_hold: Duration = Field(default=defaults.CAP_HOLD, gt=0)
    rate_hold_max: Duration = Field(default=defaults.RATE_HOLD_MAX, gt=0)
    #: Long transports on a broker (statusq.queues.stomp.longjobs): a held item's lease, renewed
    #: every third of it while it runs; a killed worker's items go back to the broker this long
    #: after its last renewal.
    long_lease: Duration = Field(default=defaults.LONG_LEASE, ge=1)
    stomp: StompConfig = StompConfig()
    db: DBConfig = DBConfig()
