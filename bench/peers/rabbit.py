"""Queue housekeeping on the bench's RabbitMQ node over AMQP (runs in the bench venv: pika).

    python bench/peers/rabbit.py delete QUEUE...   delete (and so purge) each queue, if it exists
    python bench/peers/rabbit.py count QUEUE...    print {"queue": messages ready or null} as JSON
    python bench/peers/rabbit.py versions          print the broker's and the peers' versions

statusq's STOMP destination /queue/a/b is the AMQP queue "a.b" on RabbitMQ, so one tool serves
all three systems.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pika
from pika.exceptions import AMQPConnectionError, ChannelClosedByBroker

AMQP_URL = os.environ.get("PEERS_AMQP_PIKA", "amqp://guest:guest@127.0.0.1:5673/%2F")


def connect(timeout: float = 60.0) -> pika.BlockingConnection:
    """The broker may be restarting (the test suite stops and kills this node on purpose, and
    other work shares it): wait for it rather than fail a row over it."""
    until = time.monotonic() + timeout
    while True:
        try:
            return pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        except AMQPConnectionError:
            if time.monotonic() > until:
                raise
            time.sleep(1.0)


def count(connection: pika.BlockingConnection, queue: str) -> int | None:
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue, passive=True).method.message_count)
    except ChannelClosedByBroker:  # 404: no such queue
        return None
    finally:
        if channel.is_open:
            channel.close()


def versions() -> int:
    import celery  # noqa: PLC0415 -- only this command needs the peers themselves
    import dramatiq  # noqa: PLC0415 -- as above

    connection = connect()
    server = connection._impl.server_properties  # pika keeps the broker's Connection.Start here
    connection.close()
    rabbit = server.get("version", b"?")
    rabbit = rabbit.decode() if isinstance(rabbit, bytes) else str(rabbit)
    print(json.dumps({"rabbitmq": rabbit, "celery": celery.__version__, "dramatiq": dramatiq.__version__}))
    return 0


def main(argv: list[str]) -> int:
    if argv == ["versions"]:
        return versions()
    if len(argv) < 2 or argv[0] not in ("delete", "count"):
        print(__doc__, file=sys.stderr)
        return 2
    connection = connect()
    try:
        if argv[0] == "count":
            print(json.dumps({queue: count(connection, queue) for queue in argv[1:]}))
            return 0
        channel = connection.channel()
        for queue in argv[1:]:
            channel.queue_delete(queue)  # RabbitMQ: deleting a queue that is not there is no error
            channel.exchange_delete(queue)  # Celery declares an exchange of the queue's name
        return 0
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
