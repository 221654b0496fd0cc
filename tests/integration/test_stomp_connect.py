"""A STOMP connect that fails says why, against real sockets: a refused login (RabbitMQ), a port
where nothing listens, and a server that accepts and never answers (issue 18: "connection errors
name what failed instead of guessing")."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from statusq.config import StompConfig
from statusq.errors import ConnectionClosed
from statusq.queues.stomp.link import StompLink
from tests.stomp import make_broker


def link_to(port: int, **extra: object) -> StompLink:
    config = StompConfig.model_validate(
        {"servers": [f"127.0.0.1:{port}"], "username": "guest", "password": "guest", "receipt_timeout": "2s", **extra}
    )
    return StompLink(config, "test")


def connect_error(link: StompLink) -> str:
    try:
        with pytest.raises(ConnectionClosed) as failure:
            link.connect()
    finally:
        link.close()
    return str(failure.value)


def test_a_refused_login_names_the_user_and_the_broker_s_reason() -> None:
    broker = make_broker("rabbitmq")
    message = connect_error(link_to(broker.port, password="not-the-password"))
    assert "refused the connection" in message and "'guest'" in message
    assert "access refused" in message.lower(), message  # RabbitMQ's own words, passed on


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word (a hung broker, or not a STOMP port)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_a_server_that_never_answers_is_not_blamed_on_the_login(silent_server: int) -> None:
    message = connect_error(link_to(silent_server))
    assert "accepted the connection but sent no CONNECTED" in message
    assert "login" not in message


def test_a_port_where_nothing_listens_says_nothing_answers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # free once closed: nothing listens there now
    message = connect_error(link_to(port))
    assert "nothing answers there" in message
