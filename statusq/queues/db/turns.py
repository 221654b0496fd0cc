"""Fair turns across sites on the database backend: which ready items one claim takes.

Why: claimed by ``priority DESC, id`` alone, a site that enqueued 2,000 items had them all run
before one item another site enqueued a moment later (it was claimed 2,000th).  Now a claim
takes, at the highest priority that has a ready item, the oldest ready items of up to ``:count``
sites, an equal share of the batch each; the worker runs the batch in turns (the first item of
each site, then the second of each, …: :func:`in_turns`).  Priority still comes first: a claim
never takes a lower priority's item while a higher one is ready.

How it stays cheap (no scan of a flooding site's backlog): one statement,

1. ``top``: the highest ready priority, the first entry of the ready index
   (``statusq_items_ready``);
2. ``turn``: the sites with a ready item at that priority, one index probe each in
   ``statusq_items_sites`` (``priority, site, id DESC``: a site's newest row first, since its
   oldest ones are the ones in flight): the first site after ``:after`` (the last site this
   worker served), then the next one, wrapping round, up to ``:count`` sites.  The rotation is
   what keeps a host with more ready sites than a batch holds fair across claims;
3. per site, its ``k`` oldest ready items, ``k`` = ``ceil(:count / sites)``, a range of the
   same index: on PostgreSQL a ``LATERAL … ORDER BY id LIMIT k FOR UPDATE SKIP LOCKED``; on
   SQLite (no LATERAL) the id of the ``k``-th oldest, then the range up to it.

The work is proportional to the batch and the number of sites in it, not to the backlog.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Integer,
    Select,
    String,
    Update,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import NamedFromClause

from statusq.queues.base import Subscription
from statusq.queues.db.schema import items

#: Above every id: a site with fewer ready items than its share has them all taken.
_NO_LIMIT = 2**62
#: ``WITH … AS MATERIALIZED``: PostgreSQL 12 and SQLite 3.35 on (Debian 12 has 3.40).  An older
#: SQLite gets the plain CTE: the same items, each site's bound computed more often.
_MATERIALIZED = sqlite3.sqlite_version_info >= (3, 35, 0)


def _materialized(cte: CTE) -> CTE:
    return cte.prefix_with("MATERIALIZED") if _MATERIALIZED else cte


def ready(subscription: Subscription, table: NamedFromClause = items) -> ColumnElement[bool]:
    """This subscription's items in ``table`` (``items`` or an alias of it) that may be claimed
    at ``:now`` (a claim from before ``:stale_before`` has expired and may be taken over)."""
    c = table.c
    # ``held = 0`` as a literal, not a bound parameter: the partial indexes are used only for a
    # query whose WHERE says the same.
    condition = and_(
        c.held == literal_column("0"),
        c.available_at <= bindparam("now"),
        or_(c.claimed_by.is_(None), c.claimed_at < bindparam("stale_before")),
    )
    if subscription.transports is not None:
        mine: ColumnElement[bool] = c.transport.in_(sorted(subscription.transports))
        if subscription.catch_unknown:
            mine = or_(mine, c.transport.not_in(sorted(subscription.known_transports)))
        condition = and_(condition, mine)
    if subscription.sites is not None:
        condition = and_(condition, c.site.in_(sorted(subscription.sites)))
    return condition


def _top(subscription: Subscription) -> CTE:
    t = items.alias("t")
    pick = select(t.c.priority.label("p")).where(ready(subscription, t))
    return pick.order_by(t.c.priority.desc(), t.c.id).limit(1).cte("top")


def _next_site(subscription: Subscription, top: CTE, after: ColumnElement[Any] | None) -> ColumnElement[Any]:
    """The first site (in name order) with a ready item at the top priority after ``after``
    (None: the first of all): one probe of ``statusq_items_sites``."""
    s = items.alias("s")
    where = [ready(subscription, s), s.c.priority == select(top.c.p).scalar_subquery()]
    if after is not None:
        where.append(s.c.site > after)
    # Newest first within a site: a flooding site's oldest items are the ones claimed (in
    # flight), and a probe from its oldest end stepped over each of them.
    return select(s.c.site).where(*where).order_by(s.c.site, s.c.id.desc()).limit(1).scalar_subquery()


def _turn(subscription: Subscription, top: CTE) -> CTE:
    """Up to ``:count`` sites with a ready item at the top priority, in rotation from the one
    after ``:after``: ``(site, n, first)``; a row whose ``site`` is NULL or repeats ``first``
    ends the list (the rotation came round)."""
    after = bindparam("after", type_=String)
    first = func.coalesce(_next_site(subscription, top, after), _next_site(subscription, top, None))
    start = _materialized(select(first.label("site")).cte("start"))  # one probe each, not one per mention
    anchor = select(start.c.site, literal(1, Integer).label("n"), start.c.site.label("first"))
    turn = anchor.cte("turn", recursive=True)
    following = func.coalesce(_next_site(subscription, top, turn.c.site), _next_site(subscription, top, None))
    step = select(following, turn.c.n + 1, turn.c.first).where(
        turn.c.site.is_not(None),
        turn.c.n < bindparam("count", type_=Integer),
        or_(turn.c.n == 1, turn.c.site != turn.c.first),
    )
    return turn.union_all(step)


def _members(turn: CTE) -> CTE:
    """The turn's sites, the rotation's end marker left out."""
    sites = select(turn.c.site).where(turn.c.site.is_not(None), or_(turn.c.n == 1, turn.c.site != turn.c.first))
    return sites.cte("members")


def _share(members: CTE) -> ColumnElement[Any]:
    """``ceil(:count / sites)``, in integer arithmetic on both databases (never evaluated
    without a site: NULL then)."""
    many = select(func.count()).select_from(members).scalar_subquery()
    return (bindparam("count", type_=Integer) + many - 1) // func.nullif(many, 0)


def _oldest(subscription: Subscription, top: CTE, members: CTE, table: NamedFromClause) -> Select[Any]:
    """A turn's site's ready items at the top priority, oldest first (a range of the index)."""
    where = [
        ready(subscription, table),
        table.c.priority == select(top.c.p).scalar_subquery(),
        table.c.site == members.c.site,
    ]
    return select(table.c.id).where(*where).order_by(table.c.id)


def pick(subscription: Subscription, *, skip_locked: bool) -> Select[Any]:
    """The ids one claim takes (see the module's docstring).

    PostgreSQL (``skip_locked``): per site, a LATERAL sub-select of its share, ``ORDER BY id
    LIMIT k FOR UPDATE SKIP LOCKED``: the planner walks the index once per site (a plain join
    let it hash every ready row of the priority: 4,889 rows read to claim 100).  SQLite has no
    LATERAL: per site, the id of its ``k``-th oldest ready item, then the range up to it."""
    top = _top(subscription)
    members = _members(_turn(subscription, top))
    x = items.alias("x")
    if skip_locked:
        share = _oldest(subscription, top, members, x).limit(_share(members))
        locked = share.with_for_update(skip_locked=True, of=x).lateral("share")
        return select(locked.c.id).select_from(members).join(locked, true())
    u = items.alias("u")
    last = _oldest(subscription, top, members, u).limit(1).offset(_share(members) - 1).scalar_subquery()
    # MATERIALIZED: computed once per site, not once per candidate row (SQLite folded it in).
    shares = _materialized(select(members.c.site, last.label("last_id")).cte("shares"))
    where = [
        ready(subscription, x),
        x.c.priority == select(top.c.p).scalar_subquery(),
        x.c.site == shares.c.site,
        # A range of the index, not a filter: no OR here.
        x.c.id <= func.coalesce(shares.c.last_id, literal(_NO_LIMIT, BigInteger)),
    ]
    return select(x.c.id).select_from(shares).join(x, true()).where(*where)


def fair_claim_statement(subscription: Subscription, values: Mapping[str, Any], *, skip_locked: bool) -> Update:
    """The claim: ``values`` set on the rows :func:`pick` chose, every column returned."""
    chosen = pick(subscription, skip_locked=skip_locked)
    return update(items).where(items.c.id.in_(chosen.scalar_subquery())).values(**values).returning(*items.c)


def in_turns(rows: Sequence[Mapping[Any, Any]], after: str = "") -> list[Mapping[Any, Any]]:
    """A claimed batch in the order it runs: highest priority first; within a priority, the
    oldest item of each site, then the second of each, and so on, the sites in the rotation's
    order (those after ``after`` by name, then those it wrapped round to)."""
    ordered = sorted(rows, key=lambda row: (-row["priority"], row["id"]))
    turn: dict[tuple[int, str], int] = defaultdict(int)
    keyed = []
    for row in ordered:
        key = (row["priority"], row["site"])
        keyed.append(((-row["priority"], turn[key], _rotation(row["site"], after)), row))
        turn[key] += 1
    return [row for _, row in sorted(keyed, key=lambda pair: pair[0])]


def _rotation(site: str, after: str) -> tuple[bool, str]:
    return (site <= after, site)


def next_after(rows: Sequence[Mapping[Any, Any]], after: str) -> str:
    """Where the next claim's rotation starts: after the last site this batch served, in the
    rotation order that started after ``after``."""
    sites = sorted({row["site"] for row in rows}, key=lambda site: _rotation(site, after))
    return sites[-1] if sites else after
