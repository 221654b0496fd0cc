"""The base class plugin authors subclass."""

from __future__ import annotations

from statusq.item import QueueItem
from statusq.produce import RATE_KEY_HEADER


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

    def rate_key(self, item: QueueItem) -> str | None:
        """The key ``[transports.NAME] key_rate_limit`` counts this item under (e.g. the remote
        host a push goes to), or None: not limited by key.  By default the producer's choice, the
        item's ``x-statusq-rate-key`` header; override to derive it from the payload.  Asked
        only where the transport has a ``key_rate_limit``, before ``handle``."""
        return item.headers.get(RATE_KEY_HEADER) or None
