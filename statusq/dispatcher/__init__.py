"""Periodic queues: plugins declare them, the dispatcher enqueues their runs, workers do the work.

``api.register_queue(...)`` declares a serial queue (every ``frequency``, up to ``items`` items
from a source) or a batch queue (every member once per period, spread over runs by Aegir's
formula, fixed).  The dispatcher runs in each worker as an IoManager
(:func:`dispatcher_manager`) or one-shot (``statusq dispatch``); workers report progress through
:class:`DispatchHooks`.  Its state lives in ``config.db_url``, whatever the queue backend.

Only light names are imported here: the plugin API reaches :mod:`.registry` at registration time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from statusq.dispatcher.registry import QueueSpec, WorkItem

if TYPE_CHECKING:
    from statusq.dispatcher.hooks import DispatchHooks
    from statusq.dispatcher.runner import Dispatcher
    from statusq.io.manager import IoManager
    from statusq.queues.base import QueueManager
    from statusq.runtime import Runtime

__all__ = ["QueueSpec", "WorkItem", "dispatch_hooks", "dispatcher_manager", "make_dispatcher"]


def make_dispatcher(runtime: Runtime, queue_manager: QueueManager) -> Dispatcher:
    """A dispatcher over the runtime's declared queues, its state in ``config.db_url``."""
    from statusq.dispatcher.runner import Dispatcher
    from statusq.dispatcher.store import DispatchStore
    from statusq.queues.db.manager import worker_name

    config = runtime.config.dispatcher
    return Dispatcher(
        runtime.registry.queues,
        DispatchStore(runtime.config.db_url),
        queue_manager,
        owner=worker_name(),
        claim_expiry=config.claim_expiry,
        chunk=config.chunk,
    )


def dispatcher_manager(runtime: Runtime, queue_manager: QueueManager) -> IoManager | None:
    """The dispatcher as a worker's IoManager; None when no plugin declares a queue or
    ``[dispatcher] enabled = false``.  Safe in every worker of every daemon: runs are claimed in
    the database, so each due run happens once cluster-wide."""
    if not runtime.config.dispatcher.enabled or not len(runtime.registry.queues):
        return None
    from statusq.dispatcher.manager import DispatcherManager

    return DispatcherManager(make_dispatcher(runtime, queue_manager), runtime.config.dispatcher.tick)


def dispatch_hooks(runtime: Runtime) -> DispatchHooks:
    """The item hook that records run progress and each item's success.  Wire it into every
    worker, also where ``[dispatcher] enabled = false``: another host may dispatch the items
    this one handles.  It connects only when it sees a dispatched item."""
    from statusq.dispatcher.hooks import DispatchHooks

    return DispatchHooks(runtime.config.db_url)
