"""Every default in one place; docs/configuration.md's reference is generated from the models
that use them, so the documented defaults and the code cannot drift."""

from __future__ import annotations

import os
from typing import Final

#: Transport names and groups: lowercase words, so they are safe in destinations and SQL.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
#: Site names are host-like (``example.org``) but may carry underscores and dashes.
SITE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"

DEFAULT_GROUP = "main"
DEFAULT_SITE = "default"
DEFAULT_PRIORITY = 4  # JMS default; 0 lowest, 9 highest
ETA_TOLERANCE = 5.0  # an enqueue's eta up to this many seconds in the past means "now"; older is an error
MAX_BATCH = 10_000  # items per enqueue_many: one broker transaction is held in the broker's memory until COMMIT
ENQUEUE_LINES_BATCH = 1_000  # `statusq enqueue --lines`: items per enqueue_many
CONFIG_ENV = "STATUSQ_CONFIG"
SYSTEM_CONFIG = "/etc/statusq/statusq.toml"

# [queue]
MAX_RETRIES = 5
#: The largest item body, in bytes: refused at enqueue, dead-lettered before decoding when it comes anyway.
MAX_BODY = 10 * 1024 * 1024
RETRY_DELAY = 2.0  # seconds before the first retry; doubles each attempt
RETRY_DELAY_MAX = 600.0
CLAIM_TIMEOUT = 900.0  # a DB claim older than this is taken back (worker presumed dead)
POLL_MIN = 0.005  # DB consumer: first idle poll interval...
POLL_MAX = 0.2  # ...doubling up to this cap, so latency stays far below StatusNet's 10 s
ACK_FLUSH = 0.02  # STOMP and DB: longest a finished item's ack/retry/dead letter waits before it is written

# [queue.db]
DB_PREFETCH = 100  # most items one claim takes when [queue.db] prefetch is not set...
DB_HOLD = 0.1  # ...sized so that what is claimed is about this many seconds of the worker's work
SQLITE_SYNCHRONOUS: Final = "normal"  # WAL mode: a process crash loses nothing, a power loss the last commits

# [daemon]
TIME_LIMIT = 300.0  # seconds one item may run; 0 disables
SOFT_MEMORY_LIMIT = "0"  # "200MB", "50%", or 0 for none
SHUTDOWN_TIMEOUT = 30.0
CONCURRENCY = 1  # items in hand per worker process; 1: the handler runs in the loop's own thread
CONCURRENCY_MAX = 10_000

#: Exit code of a worker that wants to be replaced (over its soft memory limit).
EXIT_RESTART = os.EX_TEMPFAIL

# [queue.stomp]
STOMP_BASENAME = "/queue/statusq/"
STOMP_CONTROL_CHANNEL = "/topic/statusq.control"
CONTROL_MAX_AGE = 60.0  # s: how old (or how far ahead) a signed control command may be
STOMP_MAX_PRIORITY = 9  # RabbitMQ's x-max-priority of work queues: JMS priorities 0-9
#: Destinations per handler group on STOMP, an item's chosen by a hash of its site (fair turns).
STOMP_SHARDS = 4
#: A site is hot at a worker (its items moved to a destination of its own, fair turns within a
#: shard) once it took this many of the site's items from a shared destination within
#: STOMP_HOT_WINDOW: 10 a second, far above a quiet site's and well below a flood's (thousands),
#: and small enough that a worker runs few of a flood's items before it starts moving them.
STOMP_HOT_AFTER = 100
STOMP_HOT_WINDOW = 10.0  # s
#: s a hot site stays hot with nothing of it moved or taken: a flood in bursts keeps its place.
STOMP_HOT_COOL = 60.0
#: Hot sites per worker at once: each is a subscription more, with its own prefetch window.
STOMP_HOT_SITES = 16
#: RabbitMQ: how long an item may wait in a hot site's queue before it goes back to its group's
#: queue (x-message-ttl); so no item is left where no worker subscribes any more.
STOMP_HOT_HOLD = 600.0  # s
STOMP_PREFETCH = 100  # the prefetch window up to concurrency 25...
STOMP_PREFETCH_PER_SLOT = 4  # ...and this many per item in hand above it


def prefetch_for(concurrency: int) -> int:
    """The default STOMP prefetch window of a worker with ``concurrency`` items in hand.

    Never below :data:`STOMP_PREFETCH`: one worker's no-op throughput needs a window that covers
    the acks in flight (ack batches of up to 32 written every ``ack_flush``).  Above that it grows
    with the items in hand, so each slot has a few items waiting when it frees.
    """
    return max(STOMP_PREFETCH, STOMP_PREFETCH_PER_SLOT * concurrency)


JSON_TYPE = "application/json"
XML_TYPE = "application/xml"
BYTES_TYPE = "application/octet-stream"

# [daemon] the supervisor (statusq.daemon)
WORKERS = 0  # worker processes; 0: one per CPU this process may run on
SPAWN_DELAY = 1.0  # before replacing a worker that crashed (a memory or time-limit restart is at once)
START_TIMEOUT = 60.0  # a new worker must report ready within this, or it is killed as failed
TIME_LIMIT_GRACE = 10.0  # after time_limit, how long SIGALRM gets before the supervisor's SIGKILL
STORM_ATTEMPTS = 5  # more worker crashes than this...
STORM_WINDOW = 30.0  # ...within this many seconds is a respawn storm...
STORM_RETRY_IN = 60.0  # ...after which respawning pauses this long...
STORM_MAX_RETRY = 3  # ...this many times, then the supervisor gives up (exits non-zero)
BEAT = 10.0  # the supervisor's heartbeat in the shared store; 3 missed: the daemon is gone
FORGET_GONE = 3600.0  # a gone daemon is listed (as gone) this long, then its row is deleted

#: Exit code of a fresh worker already over its soft memory limit before its first item.  Another
#: fresh worker would be too (Celery #4125), so the supervisor leaves its slot empty and says so.
#: Internal to worker and supervisor: the daemon itself never exits with it.
EXIT_MEMORY_AT_START = 3
#: Under var_dir: one folder per running supervisor, holding its workers' state files.
RUN_DIR = "run"

# [dispatcher] periodic queues (statusq.dispatcher); queue defaults are Aegir's where they fit
DISPATCH_TICK = 2.0  # how often a dispatcher looks at the queues: hung runs are reported within one tick
DISPATCH_CLAIM_EXPIRY = 60.0  # a dispatcher's claim on a due run lapses after this (it crashed)
DISPATCH_CHUNK = 100  # items enqueued per turn of the loop, so a 80,000-item run never stalls a worker
SERIAL_FREQUENCY = 300.0  # serial queue: a run every 5 minutes...
SERIAL_ITEMS = 5  # ...of up to 5 items
BATCH_FREQUENCY = 3600.0  # batch queue: every item once per hour (Aegir's cron queue; its 5 min default is for serial)
BATCH_THRESHOLD = 100  # items per run before another run per period is added...
BATCH_MIN_RUNS = 1  # ...but never fewer runs per period than this...
BATCH_MAX_RUNS = 6  # ...nor more than this
QUEUE_TIMEOUT = 600.0  # a run still going after this is reported hung (and no longer holds its queue)

# XMPP (statusq.xmpp): per-site [settings.xmpp] tables in the site files
XMPP_GROUP = "xmpp"  # the handler group whose worker owns the connections (--group xmpp --workers 1)
#: statusq's own transports and their group, so no config needs to route them ([transports.NAME]
#: group overrides): outgoing messages, confirmations, and received chat for plugins' handlers.
BUILTIN_GROUPS = {"xmppout": XMPP_GROUP, "xmppconfirm": XMPP_GROUP, "xmppin": XMPP_GROUP}
XMPP_PORT = 5222
XMPP_RESOURCE = "statusq"
XMPP_PING_INTERVAL = 120.0  # XEP-0199 ping to the server, as StatusNet's XmppManager did
XMPP_PING_TIMEOUT = 30.0  # an unanswered ping drops the connection, which is then reopened
XMPP_CONNECT_TIMEOUT = 30.0  # TCP connect, stream set-up and login must finish within this
XMPP_SEND_TIMEOUT = 10.0  # an outgoing message waits this long for a connection and the server's receipt
XMPP_RECONNECT_DELAY = 1.0  # first reconnect delay; doubles (with jitter)...
XMPP_RECONNECT_DELAY_MAX = 60.0  # ...up to this
XMPP_CONFIRM_TTL = 86400.0  # a confirmation code is valid this long
XMPP_CONFIRM_MAX_FAILURES = 5  # wrong codes before the pending code is void

METRICS_LISTEN = "127.0.0.1:9464"  # the metrics endpoint of the whole daemon (supervisor)
METRICS_MAX_SITES = 100  # per-site series a worker keeps under site_labels = "auto"
METRICS_BACKLOG_TTL = 5.0  # seconds a backlog count is reused between scrapes
WEB_LISTEN = "127.0.0.1:9465"  # the status page: its own port, so /metrics can be opened wider

# Flow control: pauses (``statusq pause``), kept in the shared store at ``db_url``.
PAUSE_RECHECK = 1.0  # s: how often a worker re-reads the pause table (a control message: at once)
PAUSE_HOLD = 5.0  # s: a paused item is offered again this much later, its attempt not counted
SITE_RECHECK = 2.0  # s: how often a worker re-reads the site removals (a control message: at once)

# Control on the database backend: a table of commands (statusq.queues.db.control).
DB_CONTROL_TABLE = "statusq_control"  # also its NOTIFY channel, and the commands' "destination"
DB_CONTROL_POLL = 1.0  # s: how often a worker looks for new commands (PostgreSQL: NOTIFY wakes it)
DB_CONTROL_KEEP = 3600.0  # s: a command row older than this is deleted by the next sender
LONG_LEASE = 30.0  # s: a long item's lease in the shared store (statusq.queues.db.longitems)
FLOW_LEASE = 30.0  # s: a concurrency slot not renewed this long is free again (its worker died)
CAP_HOLD = 1.0  # s: an item over a concurrency cap is offered again about this much later
RATE_PRUNE_EVERY = 300.0  # s: how often a worker deletes the rate buckets idle long enough to be moot
RATE_PRUNE_AFTER = 60.0  # s: how long past both its times a bucket is kept (hosts' clocks drift)
RATE_HOLD_MAX = 10.0  # s: the longest an item over a rate limit waits before it is checked again
