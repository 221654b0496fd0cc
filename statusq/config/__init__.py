"""Configuration: TOML files validated once into typed, frozen objects.

Loading has no global side effects (no logging set-up, no imports of plugins), so a process may
load many site configs and switch between them per item.  Every error names the file, the key
and the reason, because an operator reading a log at 3 a.m. should not have to guess.

The value types are in :mod:`~statusq.config.values`, ``[queue]`` in :mod:`~statusq.config.queue`,
the other tables and a site's file in :mod:`~statusq.config.sections`, the whole file in
:mod:`~statusq.config.model`, reading files in :mod:`~statusq.config.loading`; import them from
here.
"""

from __future__ import annotations

from statusq.config.loading import find_config, load_config, load_site, read_toml
from statusq.config.model import Config
from statusq.config.queue import DBConfig, QueueConfig, StompConfig
from statusq.config.sections import (
    DaemonConfig,
    DispatcherConfig,
    HandlerSettings,
    LogConfig,
    MetricsConfig,
    PluginsConfig,
    SentryConfig,
    SiteConfig,
    SitesConfig,
    TracingConfig,
    TransportConfig,
    WebConfig,
)
from statusq.config.values import Burst, Duration, Listen, LogLevel, MemoryLimit, Rate, Size

__all__ = [
    "Burst",
    "Config",
    "DBConfig",
    "DaemonConfig",
    "DispatcherConfig",
    "Duration",
    "HandlerSettings",
    "Listen",
    "LogConfig",
    "LogLevel",
    "MemoryLimit",
    "MetricsConfig",
    "PluginsConfig",
    "QueueConfig",
    "Rate",
    "SentryConfig",
    "SiteConfig",
    "SitesConfig",
    "Size",
    "StompConfig",
    "TracingConfig",
    "TransportConfig",
    "WebConfig",
    "find_config",
    "load_config",
    "load_site",
    "read_toml",
]
