"""``statusq pause`` / ``statusq resume``: hold a site's or a transport's items everywhere.

A pause is a row in the shared store (``[queue] db_url``): every daemon on every host reads it
within ``[queue] pause_recheck`` and holds the items it names (not run, not dead-lettered,
attempts not counted) until ``statusq resume``; it survives restarts of every daemon.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import click

from statusq.cli.helpers import echo_table, runtime

EPILOG = """\b
Examples:
  statusq pause --site example.org --reason "migrating to the new host"
  statusq pause --transport push
  statusq pause                       # list the pauses in force
  statusq resume --site example.org
\b
See docs/flow-control.md (make docs builds it into site/).
"""


def _scope(site: str | None, transport: str | None) -> dict[str, str | None]:
    if (site is None) == (transport is None):
        raise click.UsageError("give exactly one of --site or --transport")
    return {"site": site, "transport": transport}


@click.command(epilog=EPILOG)
@click.option("--site", help="Hold this site's items.")
@click.option("--transport", help="Hold this transport's items, on every site.")
@click.option("--reason", default="", help="Shown in `statusq status`, on the web page and in the logs.")
@click.option("--json", "as_json", is_flag=True, help="List the pauses as JSON.")
@click.pass_context
def pause(ctx: click.Context, site: str | None, transport: str | None, reason: str, as_json: bool) -> int:
    """Pause a site or a transport in every daemon on every host (no option: list the pauses)."""
    with runtime(ctx).queue_manager() as qm:
        if site is None and transport is None:
            found = qm.pauses()
            if as_json:
                click.echo(json.dumps([asdict(p) for p in found], indent=2))
            else:
                echo_pauses([asdict(p) for p in found])
            return 0
        done = qm.pause(**_scope(site, transport), reason=reason)
    click.echo(f"{done.describe()}; its items are held until `statusq resume --{done.kind} {done.name}`")
    return 0


@click.command(epilog=EPILOG)
@click.option("--site", help="Run this site's items again.")
@click.option("--transport", help="Run this transport's items again.")
@click.pass_context
def resume(ctx: click.Context, site: str | None, transport: str | None) -> int:
    """Lift a pause: the held items run again (within ``[queue] pause_hold``)."""
    scope = _scope(site, transport)
    with runtime(ctx).queue_manager() as qm:
        lifted = qm.resume(**scope)
    kind, name = ("site", site) if site is not None else ("transport", transport)
    click.echo(f"{kind} {name} resumed" if lifted else f"{kind} {name} was not paused")
    return 0


def echo_pauses(rows: list[dict[str, object]]) -> None:
    """The pauses as a table (``statusq pause``, ``statusq status``)."""
    if not rows:
        click.echo("no pauses")
        return
    now = time.time()
    echo_table(
        ["PAUSED", "NAME", "FOR", "REASON"],
        [[r["kind"], r["name"], f"{now - float(str(r['paused_at'])):.0f}s", r["reason"] or "-"] for r in rows],
    )
