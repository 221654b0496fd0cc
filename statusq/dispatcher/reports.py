"""What workers report to the dispatcher's tables, per item: which run's item is in hand, and how
it ended (statusq.dispatcher.hooks).

Apart from :mod:`statusq.dispatcher.store` (the dispatcher's own claims, runs and members)
because this runs in every worker for every dispatched item, not in the dispatcher: its
statements are built once at import, since building one costs more than running it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, select, update

from statusq.dispatcher.tables import members, queues, runs


class WorkerReports:
    """The workers' half of :class:`~statusq.dispatcher.store.DispatchStore`."""

    #: The store's transaction (:meth:`DispatchStore.begin`).
    begin: Callable[[], AbstractContextManager[Connection]]

    def item_started(self, queue: str, seq: int, key: str) -> None:
        with self.begin() as conn:
            conn.execute(_STARTED, {"q": queue, "s": seq, "k": key})

    def items_settled(self, settled: Sequence[tuple[str, int, str, bool]], now: float) -> None:
        """Items of runs finished for good, as (queue, run, key, succeeded); a success is the
        item's "last processed" time.  Many at once for simulations; a worker reports one."""
        params = [{"q": q, "s": s, "k": k, "now": now} for q, s, k, _ in settled]
        ok = [p for p, (*_, good) in zip(params, settled, strict=True) if good]
        failed = [p for p, (*_, good) in zip(params, settled, strict=True) if not good]
        with self.begin() as conn:
            if ok:
                conn.execute(_PROCESSED, ok)
                conn.execute(_SETTLED_DONE, ok)
            if failed:
                conn.execute(_SETTLED_FAILED, failed)


# The statements workers run per item, built once: building them costs more than running them.
_STARTED = (
    update(runs).where(runs.c.queue == bindparam("q"), runs.c.seq == bindparam("s")).values(current=bindparam("k"))
)
# Within its period a processed item moves to its success time; an item whose success lands after
# the next period began keeps its rank, so that it is not skipped in that period.
_PROCESSED = (
    update(members)
    .where(members.c.queue == bindparam("q"), members.c.key == bindparam("k"))
    .values(
        last_processed=bindparam("now"),
        rank=case(
            (
                members.c.rank
                >= select(queues.c.period_start).where(queues.c.name == bindparam("q")).scalar_subquery(),
                bindparam("now"),
            ),
            else_=members.c.rank,
        ),
    )
)


def _settled(counter: Any) -> Any:
    finishing = and_(runs.c.finished.is_(None), runs.c.sealed, runs.c.done + runs.c.failed + 1 >= runs.c["items"])
    return (
        update(runs)
        .where(runs.c.queue == bindparam("q"), runs.c.seq == bindparam("s"))
        .values(
            {
                counter: counter + 1,
                runs.c.current: case((runs.c.current == bindparam("k"), None), else_=runs.c.current),
                runs.c.finished: case((finishing, bindparam("now")), else_=runs.c.finished),
            }
        )
    )


_SETTLED_DONE = _settled(runs.c.done)
_SETTLED_FAILED = _settled(runs.c.failed)
