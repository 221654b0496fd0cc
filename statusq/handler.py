"""The base class plugin authors subclass."""

from __future__ import annotations

from statusq.item import QueueItem


class QueueHandler:
    """Handles the items of one transport.

    One instance per worker process serves every site, so keep per-site state out of ``self``:
    ask :func:`statusq.current_site` (or ``item.site``) instead.

    ``handle`` returns True or None when the item is done, False to have it retried later; an
    exception also retries it, and the error is kept with the item.  After ``max_retries``
    retries (its transport's) the item is dead-lettered with the last reason.  Raise
    :class:`statusq.Retry` to choose the delay of the retry, :class:`statusq.Reject` to have it
    dead-lettered at once.
    """

    def handle(self, item: QueueItem) -> bool | None:
        raise NotImplementedError(f"{type(self).__name__} must implement handle(item)")
