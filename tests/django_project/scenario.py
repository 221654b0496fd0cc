"""Run in a process of its own by tests/integration/test_django.py (Django's settings are global
to a process): each scenario's outcome as one JSON object on standard output."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402

from statusq.contrib.django import enqueue_in_transaction, enqueue_on_commit, get_queue  # noqa: E402
from tests.django_project.notices.models import Notice  # noqa: E402


class Rollback(Exception):
    pass


def queued() -> int:
    return sum(row.ready for row in get_queue().backlog() or [])


def main() -> None:
    get_queue()  # at start-up, as an app's ready() would: the queue's tables exist before any transaction
    with connection.schema_editor() as editor:
        editor.create_model(Notice)
    out: dict[str, object] = {}
    # enqueue_on_commit: sent at the commit, not before; never when rolled back
    with transaction.atomic():
        Notice.objects.create(text="kept")
        enqueue_on_commit({"n": 1}, "count", site="a.example")
        out["on_commit_before"] = queued()
    out["on_commit_after"] = queued()
    try:
        with transaction.atomic():
            Notice.objects.create(text="dropped")
            enqueue_on_commit({"n": 2}, "count", site="a.example")
            raise Rollback
    except Rollback:
        pass
    out["on_commit_rolled_back"] = queued()
    try:
        enqueue_on_commit({"n": 3}, "count", site="not a site!")
    except Exception as exc:
        out["bad_argument"] = type(exc).__name__
    if "--in-transaction" in sys.argv:
        try:
            with transaction.atomic():
                enqueue_in_transaction({"n": 4}, "count", site="a.example")
                raise Rollback
        except Rollback:
            pass
        out["in_transaction_rolled_back"] = queued()
        with transaction.atomic():
            Notice.objects.create(text="with its item")
            enqueue_in_transaction({"n": 5}, "count", site="a.example")
        out["in_transaction_committed"] = queued()
    out["notices"] = Notice.objects.count()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
