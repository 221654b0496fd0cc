"""statusq in a Django application: one queue manager per process, from ``settings.STATUSQ_CONFIG``,
and items enqueued when the surrounding transaction commits.

.. code-block:: python

    # settings.py
    STATUSQ_CONFIG = "/etc/statusq/statusq.toml"     # unset: $STATUSQ_CONFIG, then the default

    # views.py
    from statusq.contrib.django import enqueue_on_commit

    with transaction.atomic():
        notice = Notice.objects.create(text=text)
        enqueue_on_commit({"notice": notice.pk}, "distrib", site="example.org")

Call :func:`get_queue` once at start-up (an ``AppConfig.ready``): on the database backend it creates
the queue's tables, which SQLite cannot do while a transaction of the application holds the
database.  ``enqueue_on_commit`` works on every backend: the item is sent once the transaction commits, and
never if it rolls back (Django's ``transaction.on_commit``).  A crash between the commit and the
send loses the item; on the database backend, ``enqueue_in_transaction`` writes it in the
transaction itself (it must then be the queue's own database), so the two cannot part.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.db import connections, transaction

import statusq
from statusq.produce import prepare
from statusq.queues.base import QueueManager

_lock = threading.Lock()
_queue: QueueManager | None = None


def get_queue() -> QueueManager:
    """The process's queue manager, opened on first use from ``settings.STATUSQ_CONFIG``."""
    global _queue  # one per process, as Django keeps its connections
    with _lock:
        if _queue is None:
            _queue = statusq.connect(getattr(settings, "STATUSQ_CONFIG", None))
        return _queue


def close_queue() -> None:
    """Close the process's queue manager (tests, or a worker process about to fork)."""
    global _queue
    with _lock:
        if _queue is not None:
            _queue.close()
            _queue = None


def enqueue_on_commit(payload: Any, transport: str, *, using: str | None = None, **options: Any) -> None:
    """Enqueue when the transaction on database ``using`` commits (at once outside one).  The
    arguments are checked now, so a bad one raises here, not after the commit."""
    queue = get_queue()
    prepare(statusq.Item(payload, transport, **options), queue.default_site, queue.clock())  # raises now
    transaction.on_commit(lambda: queue.enqueue(payload, transport, **options), using=using)


def enqueue_in_transaction(payload: Any, transport: str, *, using: str | None = None, **options: Any) -> str:
    """Write the item in the current transaction of database ``using`` (database backend, the
    same database as ``[queue] db_url``); returns its id, valid once the transaction commits."""
    connection = connections[using or "default"]
    connection.ensure_connection()
    return get_queue().enqueue(payload, transport, connection=connection.connection, **options)
