"""Configuration: TOML files validated once into typed, frozen objects.

Loading has no global side effects (no logging set-up, no imports of plugins), so a process may
load many site configs and switch between them per item.  Every error names the file, the key
and the reason, because an operator reading a log at 3 a.m. should not have to guess.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from statusq import defaults
from statusq.errors import ConfigError
from statusq.units import parse_duration, parse_rate, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]


def _rate(value: str) -> str:
    parse_rate(value)  # checked at load; kept as written, so the docs and logs show it as given
    return value


#: ``"20/s"``, ``"100/m"``, ``"5/h"`` (:func:`statusq.units.parse_rate`).
Rate = Annotated[str, AfterValidator(_rate)]
#: Items a rate limit lets through at once beyond its steady pace (GCRA's burst; 1: evenly paced).
Burst = Annotated[int, Field(ge=1, le=1_000_000)]


def _memory_limit(value: int | str) -> int | str:
    """Keep percentages as text (resolved against the hard bound at run time); sizes as bytes."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = float(value.strip()[:-1])
        if not 0 < number <= 100:
            raise ValueError("a percentage limit must be between 0 and 100")
        return value.strip()
    return parse_size(value)


MemoryLimit = Annotated[int | str, BeforeValidator(_memory_limit)]
Size = Annotated[int, BeforeValidator(parse_size)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class StompConfig(_Section):
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


class DBConfig(_Section):
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


class QueueConfig(_Section):
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


class DaemonConfig(_Section):
    soft_memory_limit: MemoryLimit = defaults.SOFT_MEMORY_LIMIT
    time_limit: Duration = defaults.TIME_LIMIT
    shutdown_timeout: Duration = defaults.SHUTDOWN_TIMEOUT
    #: Items a worker process has in hand at once (threads for sync handlers, tasks for async ones).
    concurrency: int = Field(default=defaults.CONCURRENCY, ge=1, le=defaults.CONCURRENCY_MAX)
    # The supervisor (statusq.daemon): worker count, respawning, the respawn-storm guard.
    workers: int = Field(default=defaults.WORKERS, ge=0, le=1024)  # 0: one per CPU
    spawn_delay: Duration = defaults.SPAWN_DELAY
    start_timeout: Duration = Field(default=defaults.START_TIMEOUT, gt=0)
    time_limit_grace: Duration = defaults.TIME_LIMIT_GRACE
    storm_attempts: int = Field(default=defaults.STORM_ATTEMPTS, ge=1, le=10000)
    storm_window: Duration = Field(default=defaults.STORM_WINDOW, gt=0)
    storm_retry_in: Duration = defaults.STORM_RETRY_IN
    storm_max_retry: int = Field(default=defaults.STORM_MAX_RETRY, ge=0, le=10000)
    #: The cluster view (statusq.daemon.heartbeat): seconds between heartbeats in the shared store,
    #: and how long a gone daemon stays listed.
    beat: Duration = Field(default=defaults.BEAT, gt=0)
    forget_gone: Duration = Field(default=defaults.FORGET_GONE, gt=0)


class PluginsConfig(_Section):
    paths: list[str] = Field(default_factory=list)
    enabled: list[str] | None = None


class SitesConfig(_Section):
    dir: str = "sites"
    default: str = Field(default=defaults.DEFAULT_SITE, pattern=defaults.SITE_PATTERN)
    require_file: bool = False
    #: Every site's own rate limit (a bucket per site), unless its file sets one; None: none.
    rate_limit: Rate | None = None
    rate_burst: Burst = 1


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _syslog_address(value: str) -> str:
    """A socket path (``/dev/log``) or ``host:port`` (UDP)."""
    if value.startswith("/"):
        return value
    host, sep, port = value.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"expected a socket path or host:port, got {value!r}")
    return value


class LogConfig(_Section):
    """``[log]``: statusq.logs."""

    level: LogLevel = "INFO"
    format: Literal["text", "json"] = "text"
    target: Literal["stderr", "syslog", "journald"] = "stderr"
    syslog_address: Annotated[str, AfterValidator(_syslog_address)] = "/dev/log"
    journal_socket: str = "/run/systemd/journal/socket"
    #: ``[log.levels] "statusq.queues" = "DEBUG"``: a logger's own level, over ``level``.
    levels: dict[str, LogLevel] = Field(default_factory=dict)


class DispatcherConfig(_Section):
    """``[dispatcher]``: the periodic queues' dispatcher in every worker (statusq.dispatcher)."""

    enabled: bool = True  # false: this daemon dispatches nothing (its workers still handle the items)
    tick: Duration = Field(default=defaults.DISPATCH_TICK, gt=0)
    claim_expiry: Duration = Field(default=defaults.DISPATCH_CLAIM_EXPIRY, gt=0)
    chunk: int = Field(default=defaults.DISPATCH_CHUNK, ge=1, le=100_000)


def _listen(value: str) -> str:
    """``host:port`` for a listening socket; port 0 picks a free one (tests)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port (e.g. 127.0.0.1:9464), got {value!r}")
    return value


Listen = Annotated[str, AfterValidator(_listen)]


class MetricsConfig(_Section):
    """``[metrics]``: the one metrics model and its exporters (statusq.metrics)."""

    enabled: bool = True
    #: The Prometheus endpoint, served by the supervisor for all its workers.
    listen: Listen = defaults.METRICS_LISTEN
    #: "auto": a series per site until ``max_sites`` sites were seen, then "_other";
    #: "all": always per site; "none": one "_all" series; a list: those sites, the rest "_other".
    site_labels: Literal["auto", "all", "none"] | list[str] = "auto"
    max_sites: int = Field(default=defaults.METRICS_MAX_SITES, ge=0, le=100_000)
    #: statsd-style UDP events to host:port; None: off.
    statsd: Listen | None = None
    statsd_prefix: str = "statusq"
    #: How long a backlog count (a database query) is reused between scrapes.
    backlog_ttl: Duration = Field(default=defaults.METRICS_BACKLOG_TTL, ge=0)


class WebConfig(_Section):
    """``[web]``: the status and queue admin page (statusq.web), served by the supervisor."""

    enabled: bool = False
    listen: Listen = defaults.WEB_LISTEN
    #: Needed for every state-changing request; None: the page is read-only for everyone.
    token: str | None = Field(default=None, min_length=16)
    #: Whether the pages may be read without the token.
    anonymous_read: bool = False
    #: Host names the page answers to besides IP literals and localhost (a DNS-rebinding guard).
    allowed_hosts: list[str] = Field(default_factory=list)
    #: How often the handled-per-second chart samples ``/metrics``, and how far back it shows.
    sample_every: Duration = Field(default=5.0, gt=0)
    history: Duration = Field(default=600.0, gt=0)


class TracingConfig(_Section):
    """``[tracing]``: OpenTelemetry spans for each item (statusq.tracing; extra ``statusq[otel]``).

    Off by default.  A producer (``statusq.connect``) only injects the current trace context into
    the items it enqueues, through whatever tracer provider the application set up; a worker sets
    up its own provider and exporter from here."""

    enabled: bool = False
    #: "otlp-http" (port 4318), "otlp-grpc" (4317), "console" (stdout) or "none" (spans made, not sent).
    exporter: Literal["otlp-http", "otlp-grpc", "console", "none"] = "otlp-http"
    #: The collector's address; None: the exporter's own default (or OTEL_EXPORTER_OTLP_ENDPOINT).
    endpoint: str | None = None
    service_name: str = "statusq"
    #: The share of traces *started by a worker* that are kept (a producer's decision is followed).
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class SentryConfig(_Section):
    """``[sentry]``: handler failures reported to Sentry (statusq.reporting; extra ``statusq[sentry]``)."""

    #: The project's DSN; None: off.
    dsn: str | None = None
    environment: str | None = None
    #: Report every failed attempt, not only the final one (the dead letter).
    report_retries: bool = False


class HandlerSettings(_Section):
    """How a worker runs one transport's items; None: not set here (the next source applies).

    Given to ``api.register_handler(..., time_limit="30s", ...)`` and in ``[transports.NAME]``;
    config wins over registration, which wins over ``[daemon] time_limit`` and ``[queue]``'s
    retry settings (``statusq.retry.resolve_policies``)."""

    time_limit: Duration | None = None  # 0: no limit for this transport
    max_retries: int | None = Field(default=None, ge=0, le=1000)
    retry_delay: Duration | None = None
    retry_delay_max: Duration | None = None
    #: An item not started this long after its enqueue is dead-lettered as expired (0: never).
    expires: Duration | None = None


class TransportConfig(HandlerSettings):
    """``[transports.NAME]``: what producers and workers must agree on about one transport,
    read from config so that a process that only enqueues never imports a plugin, and the
    operator's overrides of the plugin's :class:`HandlerSettings`."""

    #: The handler group whose workers take this transport's items (``--group``); a plugin
    #: registering the transport in another group stops the daemon at start.
    group: str = Field(default=defaults.DEFAULT_GROUP, pattern=defaults.NAME_PATTERN)
    #: At most this many of the transport's items in hand per worker (None: the worker's
    #: ``[daemon] concurrency``), for a remote server that must not get more connections.
    concurrency: int | None = Field(default=None, ge=1, le=defaults.CONCURRENCY_MAX)
    #: The priority of an item enqueued without one.  Producers only read the config (they never
    #: import a plugin), so this is the one place for it.
    priority: int | None = Field(default=None, ge=0, le=9)
    #: Global rate limit of the transport's items, across every worker and host (statusq.flow).
    rate_limit: Rate | None = None
    rate_burst: Burst = 1
    #: A rate limit per rate key (the handler's ``rate_key(item)``: by default the item's
    #: ``x-statusq-rate-key`` header), each key a bucket of its own; keyless items: not limited.
    key_rate_limit: Rate | None = None
    key_rate_burst: Burst = 1
    #: At most this many of the transport's items running at once: cluster-wide, or per host.
    max_concurrent: int | None = Field(default=None, ge=1, le=100_000)
    concurrency_scope: Literal["cluster", "host"] = "cluster"
    #: On a broker: take each item off it (into the shared store at db_url) before its handler
    #: starts, so a run past the broker's consumer timeout is neither redelivered nor lost.
    long: bool = False


def _transport_names(value: dict[str, TransportConfig]) -> dict[str, TransportConfig]:
    bad = [name for name in value if not re.match(defaults.NAME_PATTERN, name)]
    if bad:
        raise ValueError(f"invalid transport name {bad[0]!r} (lowercase letters, digits and '_.-', max 64)")
    return value


class Config(_Section):
    """The whole of one statusq.toml, with relative paths already resolved."""

    var_dir: str = "var"
    queue: QueueConfig = QueueConfig()
    daemon: DaemonConfig = DaemonConfig()
    plugins: PluginsConfig = PluginsConfig()
    sites: SitesConfig = SitesConfig()
    log: LogConfig = LogConfig()
    dispatcher: DispatcherConfig = DispatcherConfig()
    metrics: MetricsConfig = MetricsConfig()
    web: WebConfig = WebConfig()
    tracing: TracingConfig = TracingConfig()
    sentry: SentryConfig = SentryConfig()
    transports: Annotated[dict[str, TransportConfig], AfterValidator(_transport_names)] = Field(default_factory=dict)
    #: The file this came from (None: built-in defaults); not a TOML key.
    source: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _claims_outlive_items(self) -> Config:
        # A claim that expires while its handler may still run hands the item to a second worker:
        # the handler can outlive time_limit by up to time_limit_grace, until the supervisor's SIGKILL.
        grace = self.daemon.time_limit_grace
        limits = [("daemon.time_limit", self.daemon.time_limit)] + [
            (f"transports.{name}.time_limit", t.time_limit) for name, t in self.transports.items()
        ]
        for key, limit in limits:
            if limit and self.queue.claim_timeout <= limit + grace:
                raise ValueError(
                    f"queue.claim_timeout ({self.queue.claim_timeout:g}s) must be longer than "
                    f"{key} + daemon.time_limit_grace ({limit:g}s + {grace:g}s)"
                )
        return self

    @model_validator(mode="after")
    def _caps_within_the_worker(self) -> Config:
        for name, transport in self.transports.items():
            if transport.concurrency is not None and transport.concurrency > self.daemon.concurrency:
                raise ValueError(
                    f"transports.{name}.concurrency ({transport.concurrency}) must not exceed "
                    f"daemon.concurrency ({self.daemon.concurrency})"
                )
        return self

    @property
    def prefetch(self) -> int:
        """The STOMP prefetch window per subscription: ``[queue.stomp] prefetch``, else what
        follows from ``[daemon] concurrency``."""
        return self.queue.stomp.prefetch or defaults.prefetch_for(self.daemon.concurrency)

    def with_concurrency(self, concurrency: int | None) -> Config:
        """This config with ``[daemon] concurrency`` replaced (``statusq daemon --concurrency``);
        a transport's cap above it is then held to it (:meth:`concurrency_of`)."""
        if concurrency is None or concurrency == self.daemon.concurrency:
            return self
        daemon = self.daemon.model_copy(update={"concurrency": concurrency})
        return self.model_copy(update={"daemon": daemon})

    def concurrency_of(self, transport: str) -> int:
        """How many of ``transport``'s items a worker may have in hand at once."""
        configured = self.transports.get(transport)
        cap = configured.concurrency if configured is not None else None
        return min(cap, self.daemon.concurrency) if cap is not None else self.daemon.concurrency

    def group_of(self, transport: str) -> str:
        """The handler group a transport's items are routed to: ``[transports.NAME] group``,
        else statusq's own transports' group (XMPP's), else the default group."""
        configured = self.transports.get(transport)
        if configured is not None:
            return configured.group
        return defaults.BUILTIN_GROUPS.get(transport, defaults.DEFAULT_GROUP)

    def default_priorities(self) -> dict[str, int]:
        """``[transports.NAME] priority`` where set: what producers give an item enqueued
        without a priority."""
        return {name: t.priority for name, t in self.transports.items() if t.priority is not None}

    @property
    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    @property
    def db_url(self) -> str:
        return self.queue.db_url or f"sqlite:///{Path(self.var_dir) / 'statusq.sqlite'}"


class SiteConfig(_Section):
    """One site's file (``sites/<name>.toml``): whether it is served, and its plugins' settings."""

    name: str = Field(pattern=defaults.SITE_PATTERN)
    enabled: bool = True
    #: This site's rate limit, over ``[sites] rate_limit``; ``"none"``: no limit for this site.
    rate_limit: Annotated[str, AfterValidator(lambda v: v if v == "none" else _rate(v))] | None = None
    rate_burst: Burst | None = None
    #: Free-form tables owned by plugins: ``[settings.demo] greeting = "hi"``.
    settings: dict[str, Any] = Field(default_factory=dict)


def _errors(exc: ValidationError, file: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        lines.append((key, reason))
    first_key, first_reason = lines[0]
    more = "".join(f"\n  {file}: {key}: {reason}" for key, reason in lines[1:])
    return ConfigError(first_reason + more, file=file, key=first_key)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:  # found by fuzzing: tomllib lets it through
        raise ConfigError(f"not UTF-8 text (byte {exc.start}): TOML files are UTF-8", file=str(path)) from None


def _resolve(base: Path, value: str) -> str:
    return str((base / value).resolve()) if not os.path.isabs(value) else value


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in a file are relative to that file, not to wherever the daemon started."""
    # Only values of the right shape are touched: anything else is left for validation to
    # report with its key.
    data = dict(data)
    if isinstance(data.setdefault("var_dir", "var"), str):
        data["var_dir"] = _resolve(base, data["var_dir"])
    plugins = data.setdefault("plugins", {})
    if isinstance(plugins, dict) and isinstance(plugins.get("paths"), list):
        paths = plugins["paths"]
        data["plugins"] = {
            **plugins,
            "paths": [_resolve(base, p) if isinstance(p, str) else p for p in paths],
        }
    sites = data.setdefault("sites", {})
    if isinstance(sites, dict) and isinstance(sites.get("dir", "sites"), str):
        data["sites"] = {**sites, "dir": _resolve(base, sites.get("dir", "sites"))}
    queue = data.get("queue")
    url = queue.get("db_url") if isinstance(queue, dict) else None
    if isinstance(queue, dict) and isinstance(url, str) and _relative_sqlite(url):
        data["queue"] = {**queue, "db_url": "sqlite:///" + _resolve(base, url.removeprefix("sqlite:///"))}
    return data


def _relative_sqlite(url: str) -> bool:
    path = url.removeprefix("sqlite:///")
    return url.startswith("sqlite:///") and not path.startswith("/") and not path.startswith(":memory:")


def find_config(path: str | os.PathLike[str] | None) -> Path | None:
    """The file to read: an explicit path, then $STATUSQ_CONFIG, then the system file if any."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(defaults.CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    system = Path(defaults.SYSTEM_CONFIG)
    return system if system.exists() else None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config file; with none found, the built-in defaults apply."""
    found = find_config(path)
    if found is None:
        return Config.model_validate(_resolve_paths({}, Path.cwd()))
    data = read_toml(found)
    data = _resolve_paths(data, found.resolve().parent)
    data["source"] = str(found.resolve())
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _errors(exc, str(found)) from None


def load_site(path: Path) -> SiteConfig:
    """Read one site's file; the site's name is the file's name without ``.toml``."""
    data = read_toml(path)
    if "name" in data:
        raise ConfigError("unknown key (a site is named by its file name)", file=str(path), key="name")
    try:
        return SiteConfig.model_validate({**data, "name": path.name.removesuffix(".toml")})
    except ValidationError as exc:
        raise _errors(exc, str(path)) from None
