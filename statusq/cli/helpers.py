"""What every command shares: the runtime from --config, logging, exit codes for errors."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from statusq.logs import TEXT_FORMAT
from statusq.runtime import Runtime


def setup_logging(level: str) -> None:
    """For the short commands; the daemon follows ``[log]`` (:func:`statusq.logs.configure`)."""
    logging.basicConfig(level=level, format=TEXT_FORMAT, stream=sys.stderr, force=True)


def runtime(ctx: click.Context) -> Runtime:
    """The runtime for this invocation, loaded once from --config / $STATUSQ_CONFIG."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "runtime" not in obj:
        obj["runtime"] = Runtime.from_path(obj.get("config_path"))
    result: Runtime = obj["runtime"]
    return result


def echo_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Plain aligned columns: readable in a terminal, greppable in a script."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
