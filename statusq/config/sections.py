"""The sections of statusq.toml beside ``[queue]``, each one table, and a site's own file.

Each model is a table's keys, defaults and limits and nothing else: the checks that span tables
live on :class:`statusq.config.model.Config`, and reading files in :mod:`statusq.config.loading`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from statusq import defaults
from statusq.config.values import Burst, Duration, Listen, LogLevel, MemoryLimit, Rate, Section, check_rate


class DaemonConfig(Section):
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


class PluginsConfig(Section):
    paths: list[str] = Field(default_factory=list)
    enabled: list[str] | None = None


class SitesConfig(Section):
    dir: str = "sites"
    default: str = Field(default=defaults.DEFAULT_SITE, pattern=defaults.SITE_PATTERN)
    require_file: bool = False
    #: Every site's own rate limit (a bucket per site), unless its file sets one; None: none.
    rate_limit: Rate | None = None
    rate_burst: Burst = 1


def _syslog_address(value: str) -> str:
    """A socket path (``/dev/log``) or ``host:port`` (UDP)."""
    if value.startswith("/"):
        return value
    host, sep, port = value.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"expected a socket path or host:port, got {value!r}")
    return value


class LogConfig(Section):
    """``[log]``: statusq.logs."""

    level: LogLevel = "INFO"
    format: Literal["text", "json"] = "text"
    target: Literal["stderr", "syslog", "journald"] = "stderr"
    syslog_address: Annotated[str, AfterValidator(_syslog_address)] = "/dev/log"
    journal_socket: str = "/run/systemd/journal/socket"
    #: ``[log.levels] "statusq.queues" = "DEBUG"``: a logger's own level, over ``level``.
    levels: dict[str, LogLevel] = Field(default_factory=dict)


class DispatcherConfig(Section):
    """``[dispatcher]``: the periodic queues' dispatcher in every worker (statusq.dispatcher)."""

    enabled: bool = True  # false: this daemon dispatches nothing (its workers still handle the items)
    tick: Duration = Field(default=defaults.DISPATCH_TICK, gt=0)
    claim_expiry: Duration = Field(default=defaults.DISPATCH_CLAIM_EXPIRY, gt=0)
    chunk: int = Field(default=defaults.DISPATCH_CHUNK, ge=1, le=100_000)


class MetricsConfig(Section):
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


class WebConfig(Section):
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


class TracingConfig(Section):
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


class SentryConfig(Section):
    """``[sentry]``: handler failures reported to Sentry (statusq.reporting; extra ``statusq[sentry]``)."""

    #: The project's DSN; None: off.
    dsn: str | None = None
    environment: str | None = None
    #: Report every failed attempt, not only the final one (the dead letter).
    report_retries: bool = False


class HandlerSettings(Section):
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


class SiteConfig(Section):
    """One site's file (``sites/<name>.toml``): whether it is served, and its plugins' settings."""

    name: str = Field(pattern=defaults.SITE_PATTERN)
    enabled: bool = True
    #: This site's rate limit, over ``[sites] rate_limit``; ``"none"``: no limit for this site.
    rate_limit: Annotated[str, AfterValidator(lambda v: v if v == "none" else check_rate(v))] | None = None
    rate_burst: Burst | None = None
    #: Free-form tables owned by plugins: ``[settings.demo] greeting = "hi"``.
    settings: dict[str, Any] = Field(default_factory=dict)
