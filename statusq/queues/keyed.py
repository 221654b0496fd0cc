"""Putting keyed items: reserve each key, put what is new, bind the ids (statusq.queues.keys).

Apart from :class:`~statusq.queues.base.QueueManager` so that an enqueue without keys (nearly
all of them) runs none of this, and every backend gets the same rule.
"""

from __future__ import annotations

from collections.abc import Callable

from statusq.item import Message
from statusq.queues.keys import UniqueKeys


def put_one(keys: UniqueKeys, put: Callable[[Message], str], message: Message, now: float) -> tuple[str, bool]:
    """The item's id, and whether it was added (False: the key's live item's id)."""
    assert message.key is not None
    holder = keys.claim(message.key, message.unique_for)
    if holder is not None:
        return holder, False
    try:
        item_id = put(message)
    except BaseException:
        keys.release(message.key, "")  # nothing was put: the key is free again
        raise
    keys.bind(message.key, item_id, now + message.delay)
    return item_id, True


def put_many(
    keys: UniqueKeys, put_many: Callable[[list[Message]], list[str]], messages: list[Message], now: float
) -> tuple[list[str], list[bool]]:
    """A batch with keys: items whose key is live are not put (their holder's id is returned),
    a key twice in the batch is put once (both get its id); the rest in one transaction."""
    ids: list[str | None] = [None] * len(messages)
    first: dict[str, int] = {}  # each key's first index in the batch
    to_put: list[int] = []
    reserved: list[str] = []
    try:
        for index, message in enumerate(messages):
            key = message.key
            if key is None:
                to_put.append(index)
                continue
            if key in first:
                continue
            first[key] = index
            holder = keys.claim(key, message.unique_for)
            if holder is not None:
                ids[index] = holder
                continue
            reserved.append(key)
            to_put.append(index)
        put_ids = put_many([messages[i] for i in to_put]) if to_put else []
    except BaseException:
        for key in reserved:
            keys.release(key, "")
        raise
    for index, item_id in zip(to_put, put_ids, strict=True):
        ids[index] = item_id
    for key in reserved:
        index = first[key]
        keys.bind(key, str(ids[index]), now + messages[index].delay)
    added = [False] * len(messages)
    for index in to_put:
        added[index] = True
    done = [item_id if item_id is not None else ids[first[str(messages[i].key)]] for i, item_id in enumerate(ids)]
    return [str(item_id) for item_id in done], added
