"""The pages, as pure functions of what the sources read: easy to test, nothing to escape by hand.

Tables reuse the CLI's own rows (``statusq status``, ``statusq queues``), so the page and the
terminal never disagree about what a column means.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from statusq.cluster import CLUSTER_COLUMNS, cluster_row
from statusq.dispatcher.status import TABLE_HEADERS, QueueView, table_row
from statusq.metrics.scrape import Samples
from statusq.queues.base import BacklogRow, DeadLetter
from statusq.state import WORKER_COLUMNS, SupervisorState, WorkerState, daemon_summary, worker_row
from statusq.web.chart import Point, chart_svg
from statusq.web.html import Markup, join, render, table
from statusq.web.layout import Context, form, hidden, page, read_only_note
from statusq.web.sources import SiteRow

if TYPE_CHECKING:
    from statusq.queues.db.daemons import DaemonRow  # SQLAlchemy: only once the cluster is read
    from statusq.queues.db.pauses import Pause  # SQLAlchemy: only once pauses are read

BODY_PREVIEW = 300
BACKLOG_COLUMNS = ("SITE", "TRANSPORT", "READY", "RETRYING", "IN FLIGHT", "DEAD")


@dataclass(frozen=True, slots=True)
class Rates:
    points: list[Point]
    window: float
    problem: str | None
    samples: Samples | None


def problem(text: str) -> Markup:
    return render('<p class="problem">{text}</p>', text=text)


def overview(
    ctx: Context,
    daemons: list[tuple[SupervisorState, list[WorkerState]]],
    rates: Rates,
    backlog: list[BacklogRow] | str | None,
    cluster: list[DaemonRow] | str | None = None,
) -> Markup:
    """``backlog``: rows, why they could not be read, or None when the backend cannot count them
    cheaply (STOMP: the broker's counts from ``/metrics`` follow, where it tells them).
    ``cluster``: every host's daemons from the shared store, or why it could not be read."""
    now = time.time()
    parts = [Markup("<h2>Daemons on this host</h2>")]
    if not daemons:
        parts.append(problem("no running daemon found"))
    for supervisor, workers in daemons:
        parts.append(render("<p>{summary}</p>", summary=daemon_summary(supervisor, now)))
        parts.append(table(WORKER_COLUMNS, [worker_row(w, now) for w in workers], empty="no worker running"))
    if cluster is not None:
        parts.append(cluster_section(cluster, now))
    parts.append(Markup("<h2>Items handled per second</h2>"))
    parts.append(chart_svg(rates.points, now, rates.window))
    if rates.problem:
        parts.append(problem(f"metrics unavailable: {rates.problem}"))
    elif rates.points:
        parts.append(render("<p>now: {rate} items/s</p>", rate=f"{rates.points[-1].rate:.1f}"))
    parts.append(Markup("<h2>Backlog and dead letters</h2>"))
    if isinstance(backlog, str):
        parts.append(problem(f"backlog unavailable: {backlog}"))
    elif backlog is None:
        parts.append(Markup('<p class="note">backlog per site: ? (this backend cannot count it cheaply)</p>'))
    else:
        rows = [[r.site, r.transport, r.ready, r.delayed, r.in_flight, r.dead] for r in backlog]
        parts.append(table(BACKLOG_COLUMNS, rows, empty="no items queued, none dead"))
    if rates.samples is not None:
        parts.append(broker_counts(rates.samples))
    return page(ctx, "Overview", join(parts), refresh=10)


def cluster_section(cluster: list[DaemonRow] | str, now: float) -> Markup:
    """Every host's daemons, as ``statusq status --all`` lists them; a gone one is marked."""
    head = Markup("<h2>Cluster: every host's daemons</h2>")
    if isinstance(cluster, str):
        return join([head, problem(f"the shared store at db_url cannot be read: {cluster}")])
    gone = sum(1 for d in cluster if d.gone(now))
    note = problem(f"{gone} daemon(s) gone: no heartbeat for 3 beats") if gone else Markup("")
    rows = [cluster_row(d, now) for d in cluster]
    return join([head, note, table(CLUSTER_COLUMNS, rows, empty="no daemon has beaten")])


def broker_counts(samples: Samples) -> Markup:
    """The backend's own counts as ``/metrics`` reports them (on STOMP, the broker's)."""
    counts = [(state, samples.get("statusq_backlog_items", state=state)) for state in ("ready", "delayed", "in_flight")]
    counts.append(("dead letters", samples.get("statusq_dead_letters")))
    known = [f"{name.replace('_', ' ')} {value:.0f}" for name, value in counts if value is not None]
    return render('<p class="note">from /metrics: {counts}</p>', counts=", ".join(known)) if known else Markup("")


def duration_field(seconds: float) -> str:
    """A duration as the form shows it, in words ``parse_duration`` reads back exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def queue_form(ctx: Context, view: QueueView) -> Markup:
    selected = "yes" if view.enabled else "no"
    options = join(
        render('<option value="{v}"{sel}>{v}</option>', v=v, sel=Markup(" selected") if v == selected else "")
        for v in ("yes", "no")
    )
    fields = render(
        '<label>enabled <select name="enabled">{options}</select></label>'
        '<label>every <input type="text" name="frequency" value="{frequency}" required></label>'
        '<label>items/run <input type="text" name="items" value="{items}" placeholder="{placeholder}"></label>',
        options=options, frequency=duration_field(view.frequency), items=view.items or "",
        placeholder="auto" if view.kind == "batch" else "",
    )  # fmt: skip
    return form(ctx, f"/queues/{view.name}", "Save", hidden("queue", view.name) + fields, css="row")


def queues(ctx: Context, views: list[QueueView] | str) -> Markup:
    if isinstance(views, str):
        return page(ctx, "Periodic queues", problem(views))
    now = time.time()
    headers = [*TABLE_HEADERS, "BUSY WITH"] + (["CHANGE"] if ctx.can_write else [])
    rows = []
    for view in views:
        busy = view.current_item or ("-" if view.running_for is None else "starting")
        rows.append([*table_row(view, now), busy] + ([queue_form(ctx, view)] if ctx.can_write else []))
    notes = [
        render('<p class="problem">{name}: {error}</p>', name=v.name, error=v.last_error)
        for v in views
        if v.status == "error" and v.last_error
    ]
    intro = Markup(
        '<p class="note">Changes are stored where <code>statusq queues set</code> stores them: every daemon '
        "applies them at its next tick, without a restart. A batch queue's items per run left empty: "
        "computed from its total (Aegir's formula).</p>"
    )
    body = intro + read_only_note(ctx) + table(headers, rows, empty="no periodic queues: no plugin declares one")
    return page(ctx, "Periodic queues", body + join(notes))


def dead_letter_rows(ctx: Context, letters: Sequence[DeadLetter]) -> list[list[object]]:
    rows: list[list[object]] = []
    for d in letters:
        body = d.body.decode("utf-8", "replace")
        preview = body[:BODY_PREVIEW] + ("…" if len(body) > BODY_PREVIEW else "")
        died = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.dead_at))
        code = render("<code>{b}</code>", b=preview)
        row: list[object] = [d.id, d.site, d.transport, d.attempts, died, d.error, code]
        if ctx.can_write:
            row.append(
                form(ctx, "/deadletters/requeue", "Requeue", hidden("id", d.id), css="inline")
                + form(ctx, "/deadletters/purge", "Purge", hidden("id", d.id), css="inline")
            )
        rows.append(row)
    return rows


def dead_letters(ctx: Context, letters: list[DeadLetter] | str, limit: int) -> Markup:
    if isinstance(letters, str):
        return page(ctx, "Dead letters", problem(letters))
    headers = ["ID", "SITE", "TRANSPORT", "ATTEMPTS", "DIED", "REASON", "BODY"] + (["ACTION"] if ctx.can_write else [])
    body = read_only_note(ctx)
    if ctx.can_write and letters:
        body += form(ctx, "/deadletters/requeue", "Requeue all", hidden("all", "yes"), css="row")
    body += table(headers, dead_letter_rows(ctx, letters), empty="no dead letters")
    if len(letters) >= limit:
        body += render('<p class="note">the newest {n} shown</p>', n=limit)
    return page(ctx, "Dead letters", body)


def sites(ctx: Context, rows: list[SiteRow] | str, control_problem: str | None) -> Markup:
    if isinstance(rows, str):
        return page(ctx, "Sites", problem(rows))
    writable = ctx.can_write and control_problem is None
    headers = ["SITE", "STATUS", "FILE"] + (["ACTION"] if writable else [])
    table_rows: list[list[object]] = []
    for row in rows:
        cells: list[object] = [row.name, row.status, "yes" if row.has_file else "no"]
        if writable:
            cells.append(form(ctx, "/sites/remove", "Remove", hidden("site", row.name), css="inline"))
        table_rows.append(cells)
    body = Markup(
        '<p class="note">Add and remove go to every daemon through the control channel '
        "(<code>update-site</code> re-reads <code>sites/NAME.toml</code>; <code>remove-site</code> stops "
        "serving the site, its items are dead-lettered until it is added again). STATUS is what a worker "
        "reading the sites folder and the shared store now would do: a file written while the daemon runs "
        "is served once added, and a removal (from this page or <code>statusq control</code>) is kept in the "
        "store, so workers started later follow it too.</p>"
    )
    body += read_only_note(ctx)
    if control_problem is not None:
        body += problem(f"add and remove unavailable: {control_problem}")
    if writable:
        field = Markup('<label>site <input class="wide" type="text" name="site" required></label>')
        body += form(ctx, "/sites/add", "Add / update", field, css="row")
    if ctx.can_write:
        body += backlog_forms(ctx)
    body += table(headers, table_rows, empty="no site files, no items seen")
    return page(ctx, "Sites", body)


def backlog_forms(ctx: Context) -> Markup:
    """Purge a site's queued items, cancel one item: on every backend (a broker's are dropped
    when they arrive, as ``statusq purge`` and ``statusq cancel`` do)."""
    site = Markup('<label>site <input class="wide" type="text" name="site" required></label>')
    transport = Markup('<label>transport (empty: all) <input type="text" name="transport"></label>')
    item = Markup('<label>item id <input class="wide" type="text" name="id" required></label>')
    return form(ctx, "/sites/purge", "Purge queued items", site + transport, css="row") + form(
        ctx, "/sites/cancel", "Cancel item", item, css="row"
    )


def pauses(ctx: Context, found: list[Pause] | str) -> Markup:
    """The pauses in force, a Resume button each, and a form to pause a site or a transport."""
    if isinstance(found, str):
        return page(ctx, "Pauses", problem(found))
    now = time.time()
    headers = ["PAUSED", "NAME", "FOR", "REASON"] + (["ACTION"] if ctx.can_write else [])
    rows: list[list[object]] = []
    for p in found:
        row: list[object] = [p.kind, p.name, f"{now - p.paused_at:.0f}s", p.reason or "-"]
        if ctx.can_write:
            fields = hidden("kind", p.kind) + hidden("name", p.name)
            row.append(form(ctx, "/pauses/resume", "Resume", fields, css="inline"))
        rows.append(row)
    body = Markup(
        '<p class="note">A paused site or transport is held by every daemon on every host (they re-read '
        "this list every <code>[queue] pause_recheck</code>): its items are not run, not dead-lettered, "
        "and their attempts are not counted; they run once resumed. Same as <code>statusq pause</code> "
        "and <code>statusq resume</code>.</p>"
    )
    body += read_only_note(ctx)
    if ctx.can_write:
        kinds = Markup('<option value="site">site</option><option value="transport">transport</option>')
        fields = render(
            '<label>pause <select name="kind">{kinds}</select></label>'
            '<label>name <input type="text" name="name" required></label>'
            '<label>reason <input class="wide" type="text" name="reason"></label>',
            kinds=kinds,
        )
        body += form(ctx, "/pauses/add", "Pause", fields, css="row")
    return page(ctx, "Pauses", body + table(headers, rows, empty="nothing paused"))


def login(ctx: Context, failed: bool = False) -> Markup:
    body = problem("wrong token") if failed else Markup("")
    if not ctx.writable:
        body += Markup('<p class="note">No <code>[web] token</code> is configured: there is nothing to log in to.</p>')
        return page(ctx, "Log in", body)
    body += Markup(
        '<form method="post" action="/login" class="row"><label>token '
        '<input type="password" name="token" autocomplete="current-password" required></label>'
        '<button type="submit">Log in</button></form>'
    )
    return page(ctx, "Log in", body)
