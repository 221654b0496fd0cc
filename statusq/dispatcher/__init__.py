"""Periodic queues: plugins declare them, the dispatcher enqueues their runs, workers do the work.

``api.register_queue(...)`` declares a serial queue (every ``frequency``, up to ``items`` items
from a source) or a batch queue (every member once per period, spread over runs by Aegir's
formula, fixed).  The dispatcher runs in each worker as an IoManager
(:func:`dispatcher_manager`) or one-shot (``statusq dispatch``); workers report progress through
:class:`DispatchHooks`.  Its state lives in ``config.db_url``, whatever the queue backend.

Only light names are imported here: the declarations live in :mod:`statusq.periodic` (the
registry layer), and the SQLAlchemy side (runner, store) is imported by the calls that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from statusq.config import Config
from statusq.dispatcher.hooks import DispatchHooks
from statusq.io.manager import IoManager
from statusq.names import worker_name
from statusq.periodic import QueueRegistry, QueueSpec, WorkItem
from statusq.queues.base import QueueManager

if TYPE_CHECKING:
    from statusq.dispatcher.runner import Dispatcher

__all__ = ["QueueSpec", "WorkItem", "dispatch_hooks", "dispatcher_manager", "make_dispatcher"]


def make_dispatcher(config: Config, queues: QueueRegistry, queue_manager: QueueManager) -> Dispatcher:
    """A dispatcher over the declared ``queues`` (``registry.queues``), its state in ``config.db_url``."""
    # Local: the runner and its store are SQLAlchemy, for processes that dispatch (hence the noqa).
    from statusq.dispatcher.runner import Dispatcher  # noqa: PLC0415
    from statusq.dispatcher.store import DispatchStore  # noqa: PLC0415

    return Dispatcher(
        queues,
        DispatchStore(config.db_url),
        queue_manager,
        owner=worker_name(),
        claim_expiry=config.dispatcher.claim_expiry,
        chunk=config.dispatcher.chunk,
    )


def dispatcher_manager(config: Config, queues: QueueRegistry, queue_manager: QueueManager) -> IoManager | None:
    """The dispatcher as a worker's IoManager; None when no plugin declares a queue or
    ``[dispatcher] enabled = false``.  Safe in every worker of every daemon: runs are claimed in
    the database, so each due run happens once cluster-wide."""
    if not config.dispatcher.enabled or not len(queues):
        return None
    from statusq.dispatcher.manager import DispatcherManager  # noqa: PLC0415 -- SQLAlchemy, as above

    return DispatcherManager(make_dispatcher(config, queues, queue_manager), config.dispatcher.tick)


def dispatch_hooks(config: Config) -> DispatchHooks:
    """The item hook that records run progress and each item's success.  Wire it into every
    worker, also where ``[dispatcher] enabled = false``: another host may dispatch the items
    this one handles.  It connects only when it sees a dispatched item."""
    return DispatchHooks(config.db_url)
