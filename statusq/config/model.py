"""The whole of one statusq.toml: its sections, and the checks and answers that span them.

Apart from the sections because these are the rules between tables (a claim must outlive a
handler's time limit; a transport's cap must fit the worker) and what the rest of statusq asks of
a config as a whole (a transport's group, a worker's prefetch, the database's URL).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from statusq import defaults
from statusq.config.queue import QueueConfig
from statusq.config.sections import (
    DaemonConfig,
    DispatcherConfig,
    LogConfig,
    MetricsConfig,
    PluginsConfig,
    SentryConfig,
    SitesConfig,
    TracingConfig,
    TransportConfig,
    WebConfig,
)
from statusq.config.values import Section


def _transport_names(value: dict[str, TransportConfig]) -> dict[str, TransportConfig]:
    bad = [name for name in value if not re.match(defaults.NAME_PATTERN, name)]
    if bad:
        raise ValueError(f"invalid transport name {bad[0]!r} (lowercase letters, digits and '_.-', max 64)")
    return value


class Config(Section):
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
