"""What ``statusq status`` tells about flow control: each configured limit with the slots its
cap has in use now, and the sites removed in the shared store.  These are the first two
questions when a transport's or a site's items stop moving while the backlog says they wait."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import click

from statusq.cli.helpers import echo_table
from statusq.config import Config
from statusq.errors import StatusqError

LIMIT_COLUMNS = ("TRANSPORT", "RATE", "PER KEY", "CAP", "RUNNING")


@dataclass(frozen=True, slots=True)
class LimitRow:
    transport: str
    rate_limit: str | None
    rate_burst: int
    key_rate_limit: str | None
    key_rate_burst: int
    max_concurrent: int | None
    scope: str | None  # the cap's name in the store (per host: "transport@host")
    running: int | None  # slots in use now; None: no cap, or the store cannot be read


def configured(config: Config, host: str | None = None) -> list[LimitRow]:
    """The transports with a limit, running counts not yet known."""
    host = host or socket.gethostname()
    rows = []
    for name, t in sorted(config.transports.items()):
        if t.rate_limit is None and t.key_rate_limit is None and t.max_concurrent is None:
            continue
        scope = None
        if t.max_concurrent is not None:
            scope = f"{name}@{host}" if t.concurrency_scope == "host" else name
        rows.append(
            LimitRow(
                name, t.rate_limit, t.rate_burst, t.key_rate_limit, t.key_rate_burst, t.max_concurrent, scope, None
            )
        )
    return rows


def with_running(config: Config, rows: list[LimitRow]) -> list[LimitRow]:
    """The rows with their caps' slots in use now (leases not yet expired), from the shared store;
    unchanged (running unknown) if it cannot be read, said on stderr."""
    if not any(r.scope for r in rows):
        return rows
    from statusq.queues.db.flow import FlowStore  # noqa: PLC0415 - SQLAlchemy: only when a cap is set

    try:
        store = FlowStore.for_reading(config.db_url)
        running: dict[str, int] = {}  # no table: no slot was ever taken
        if store is not None:
            try:
                running = store.running(time.time())
            finally:
                store.close()
    except StatusqError as exc:
        click.echo(f"concurrency caps: slots in use unknown ({exc})", err=True)
        return rows
    return [LimitRow(**{**asdict(r), "running": running.get(r.scope, 0) if r.scope else None}) for r in rows]


def _rate(text: str | None, burst: int) -> str:
    if text is None:
        return "-"
    return f"{text} (burst {burst})" if burst > 1 else text


def echo_limits(rows: list[LimitRow], config: Config) -> None:
    cells = []
    for r in rows:
        cap = "-" if r.max_concurrent is None else str(r.max_concurrent)
        if r.scope and "@" in r.scope:
            cap += " per host"
        running = "?" if r.scope and r.running is None else ("-" if r.running is None else str(r.running))
        cells.append(
            [r.transport, _rate(r.rate_limit, r.rate_burst), _rate(r.key_rate_limit, r.key_rate_burst), cap, running]
        )
    if cells:
        echo_table(list(LIMIT_COLUMNS), cells)
    if config.sites.rate_limit is not None:
        every = _rate(config.sites.rate_limit, config.sites.rate_burst)
        click.echo(f"every site: at most {every}, unless its site file says otherwise")


def removed_sites(config: Config) -> dict[str, float] | None:
    """The shared store's removed sites with when; None: it cannot be read (said on stderr)."""
    from statusq.queues.db.removals import read_removed  # noqa: PLC0415 - SQLAlchemy: only when asked

    try:
        return read_removed(config.db_url)
    except StatusqError as exc:
        click.echo(f"removed sites: unknown ({exc})", err=True)
        return None


def echo_removed(removed: Mapping[str, float], now: float | None = None) -> None:
    now = time.time() if now is None else now
    echo_table(
        ["REMOVED SITE", "SINCE"],
        [[site, f"{now - at:.0f}s ago"] for site, at in sorted(removed.items())],
    )
