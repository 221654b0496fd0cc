"""The fast frame parser against stomp.py's own, frame by frame: it must be a pure speed-up."""

from __future__ import annotations

import inspect
import random
import textwrap

import pytest
import stomp
import stomp.transport
import stomp.utils

from statusq.queues.stomp import frames


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\c").replace("\r", "\\r")


def _encoded(cmd: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """A frame as a STOMP 1.2 peer writes it, escapes included, less the NUL the reader drops."""
    lines = [cmd] + [f"{_escape(k)}:{_escape(v)}" for k, v in headers.items()]
    return ("\n".join(lines) + "\n\n").encode() + body


CORPUS: list[bytes] = [
    # what brokers send in practice
    _encoded(
        "MESSAGE",
        {
            "destination": "/queue/statusq/main",
            "message-id": "ID:host-1:1:1:1",
            "ack": "ID:1",
            "subscription": "sub-0",
            "statusq-site": "example.org",
            "content-type": "application/json",
        },
        b'{"n": 1}',
    ),
    b"MESSAGE\ndestination:/queue/a\nmessage-id:1\n\nbody with \r\n and \\ and \n\n inside",
    b"RECEIPT\nreceipt-id:abc\n\n",
    b"CONNECTED\nversion:1.2\nserver:RabbitMQ/3.10\nheart-beat:0,0\n\n",
    b"ERROR\nmessage:bad thing: happened\ncontent-type:text/plain\n\ndetails",
    # escapes and CRLF: the slow path
    _encoded("MESSAGE", {"a:b": "c\nd", "back\\slash": "x\\y", "cr": "1\r2"}, b"x"),
    b"MESSAGE\r\ndestination:/queue/a\r\nmessage-id:1\r\n\r\nbody",
    b"MESSAGE\ndestination:/queue/a\r\n\r\nbody",
    b"MESSAGE\nunknown:\\t escape\n\n",
    b"MESSAGE\nbackslash-then-c:a\\\\cb\ntrailing:x\\\n\n",
    b"MESSAGE\nk\\cey:first\nk\\cey:second\nk:\\cv\nplain:1\npl\\\\ain:2\n\n",
    b"MESSAGE\na:b\\cc\na:second\n\n",
    # captured from this project's brokers on 127.0.0.1 (raw socket reads), less the NUL
    b"MESSAGE\nexpires:0\ndestination:/queue/statusq.rawcapture\nack:ID\\cvm-36353-1795544794376-7\\c1\n"
    b"statusq-site:example.org\nsubscription:sub-0\npriority:4\nmessage-id:ID\\cvm-36353-1795544794376-6\\c6"
    b'\\c-1\\c1\\c1\ncontent-type:application/json\npersistent:true\ntimestamp:1795544943514\n\n{"n": 1}',
    b"MESSAGE\nsubscription:sub-0\ndestination:/queue/statusq.rawcapture\nmessage-id:T_sub-0@@session-QXB3jH1veF"
    b"KyueDbukCAuw@@1\nredelivered:false\nack:T_sub-0@@session-QXB3jH1veFKyueDbukCAuw@@1\nstatusq-site:example.org"
    b'\npersistent:true\ncontent-type:application/json\ncontent-length:8\n\n{"n": 1}',
]


@pytest.mark.parametrize("raw", CORPUS, ids=range(len(CORPUS)))
def test_the_fast_parser_agrees_with_stomp_py(raw: bytes) -> None:
    ours, theirs = frames.parse_frame(raw), stomp.utils.parse_frame(raw)
    if theirs is None:
        assert ours is None
        return
    assert (ours.cmd, ours.headers, ours.body) == (theirs.cmd, theirs.headers, theirs.body)
    assert ours.original_headers == theirs.original_headers


def test_escaped_headers_are_unescaped() -> None:
    parsed = frames.parse_frame(_encoded("MESSAGE", {"a:b": "c\nd"}, b""))
    assert parsed.headers == {"a:b": "c\nd"}


def test_a_connection_gets_the_fast_reader_and_keeps_the_rest_of_stomp_py() -> None:
    conn = stomp.Connection12([("127.0.0.1", 1)])
    assert frames.supported(), "stomp.py no longer has the hook FastTransport overrides"
    assert frames.install(conn)
    assert isinstance(conn.transport, stomp.transport.Transport)
    assert type(conn.transport) is frames.FastTransport
    assert not frames.install(conn)  # once only


def test_random_header_lines_parse_as_stomp_py_parses_them() -> None:
    # Escaped and raw text over the characters that matter to the escapes: any disagreement
    # with stomp.py's parser here is a bug in the fast path.
    rng = random.Random(1764)
    alphabet = ["a", "c", "n", "r", "t", "\\", ":", "\\c", "\\n", "\\r", "\\\\", "é"]
    for _ in range(3000):
        lines = ["MESSAGE"]
        for _ in range(rng.randint(0, 5)):
            key = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
            lines.append(f"{_escape(key)}:{_escape(value)}" if rng.random() < 0.5 else f"{key}:{value}")
        raw = ("\n".join(lines) + "\n\n").encode() + b"body"
        ours, theirs = frames.parse_frame(raw), stomp.utils.parse_frame(raw)
        assert (ours.cmd, ours.headers, ours.body) == (theirs.cmd, theirs.headers, theirs.body), raw


# stomp.py's reader that FastTransport.__read_frames stands in for, as FastTransport copies it but
# for the parse.  A stomp.py release that changes it fails this test: review FastTransport then.
_STOMP_READER = """
def __read_frames(self):
    frames = self.__read()

    for frame in frames:
        if self.__is_eol(frame):
            f = HEARTBEAT_FRAME
        else:
            f = parse_frame(frame)
        if f is None:
            continue
        if self.__auto_decode:
            f.body = decode(f.body)
        self.process_frame(f, frame)
"""


def test_the_stomp_py_reader_fast_transport_replaces_is_the_one_it_was_written_against() -> None:
    source = inspect.getsource(stomp.transport.BaseTransport._BaseTransport__read_frames)
    assert textwrap.dedent(source).strip() == _STOMP_READER.strip()
