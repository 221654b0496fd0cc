"""Every default in one place, so the README's config reference and the code cannot drift."""

from __future__ import annotations

import os

#: Transport names and groups: lowercase words, so they are safe in destinations and SQL.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
#: Site names are host-like (``example.org``) but may carry underscores and dashes.
SITE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"

DEFAULT_GROUP = "main"
DEFAULT_SITE = "default"
DEFAULT_PRIORITY = 4  # JMS default; 0 lowest, 9 highest
CONFIG_ENV = "STATUSQ_CONFIG"
SYSTEM_CONFIG = "/etc/statusq/statusq.toml"

# [queue]
MAX_RETRIES = 5
RETRY_DELAY = 2.0  # seconds before the first retry; doubles each attempt
RETRY_DELAY_MAX = 600.0
CLAIM_TIMEOUT = 900.0  # a DB claim older than this is taken back (worker presumed dead)
POLL_MIN = 0.005  # DB consumer: first idle poll interval...
POLL_MAX = 0.2  # ...doubling up to this cap, so latency stays far below StatusNet's 10 s

# [daemon]
TIME_LIMIT = 300.0  # seconds one item may run; 0 disables
SOFT_MEMORY_LIMIT = "0"  # "200MB", "50%", or 0 for none
SHUTDOWN_TIMEOUT = 30.0

#: Exit code of a worker that wants to be replaced (over its soft memory limit).
EXIT_RESTART = os.EX_TEMPFAIL

# [queue.stomp]
STOMP_BASENAME = "/queue/statusq/"
STOMP_CONTROL_CHANNEL = "/topic/statusq.control"
STOMP_PREFETCH = 100

JSON_TYPE = "application/json"
XML_TYPE = "application/xml"
BYTES_TYPE = "application/octet-stream"
