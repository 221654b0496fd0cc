"""``[log]``: JSON lines with the item's fields, per-logger levels, and the journald and syslog
targets, each read back from a real socket the test binds."""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq.config import Config, LogConfig
from statusq.errors import ConfigError
from statusq.item import Delivery
from statusq.logs import ItemLogContext, JsonFormatter, configure
from statusq.outcome import Outcome, Result


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("statusq.queues").setLevel(logging.NOTSET)


def delivery() -> Delivery:
    return Delivery(
        id="42",
        site="a.example",
        transport="push",
        body=b"{}",
        content_type="application/json",
        headers={},
        attempt=2,
        enqueued_at=0.0,
    )


def record(message: str, name: str = "statusq.test", level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, (), None)


def test_a_json_line_carries_the_item_in_hand_and_the_worker() -> None:
    formatter = JsonFormatter(worker=3)
    context = ItemLogContext()
    context.before_item(delivery())
    line = json.loads(formatter.format(record("pushing to b.example")))
    assert line["message"] == "pushing to b.example" and line["level"] == "INFO" and line["logger"] == "statusq.test"
    assert (line["site"], line["transport"], line["id"], line["attempt"], line["worker"]) == (
        "a.example",
        "push",
        "42",
        2,
        3,
    )
    assert line["time"].endswith("Z")
    # Between items, no item fields
    context.after_item(delivery(), Result(Outcome.DONE, None))
    assert "site" not in json.loads(formatter.format(record("idle")))


def test_a_traceback_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    text = JsonFormatter().format(rec)
    assert "\n" not in text and "ValueError: boom" in json.loads(text)["exception"]


def test_per_logger_levels_override_the_global_one(capsys: pytest.CaptureFixture[str]) -> None:
    configure(LogConfig(level="WARNING", format="json", levels={"statusq.queues": "DEBUG"}))
    logging.getLogger("statusq.queues.db").debug("claimed")
    logging.getLogger("statusq.processor").info("done")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["claimed"]


def test_an_unknown_level_or_format_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    from statusq.config import load_config

    path = tmp_path / "statusq.toml"
    path.write_text('[log]\nformat = "xml"\n')
    with pytest.raises(ConfigError, match=r"log\.format"):
        load_config(path)
    path.write_text('[log.levels]\n"statusq.queues" = "LOUD"\n')
    with pytest.raises(ConfigError, match=r"log\.levels"):
        load_config(path)
    assert Config.model_validate({}).log.format == "text"


def test_journald_gets_one_datagram_of_fields_per_record(tmp_path: Path) -> None:
    # A socket where journald's would be: what arrives is what journald would parse.
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(path)
        journal.settimeout(10)
        configure(LogConfig(target="journald", journal_socket=path, format="json"))
        context = ItemLogContext()
        context.before_item(delivery())
        logging.getLogger("statusq.test").warning("first line\nsecond line")
        context.after_item(delivery(), Result(Outcome.DONE, None))
        fields = parse_journal(journal.recv(65536))
    assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "statusq"
    assert fields["STATUSQ_SITE"] == "a.example" and fields["STATUSQ_ATTEMPT"] == "2"
    assert json.loads(fields["MESSAGE"])["message"] == "first line\nsecond line"


def parse_journal(data: bytes) -> dict[str, str]:
    """The native protocol: KEY=value lines, or KEY, newline, 64-bit length, value, newline."""
    fields: dict[str, str] = {}
    while data:
        line_end = data.index(b"\n")
        head = data[:line_end]
        if b"=" in head:
            key, _, value = head.partition(b"=")
            data = data[line_end + 1 :]
        else:
            (size,) = struct.unpack("<Q", data[line_end + 1 : line_end + 9])
            key, value = head, data[line_end + 9 : line_end + 9 + size]
            data = data[line_end + 9 + size + 1 :]
        fields[key.decode()] = value.decode()
    return fields


def test_syslog_over_udp_gets_the_daemon_facility_and_our_tag() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        port = server.getsockname()[1]
        configure(LogConfig(target="syslog", syslog_address=f"127.0.0.1:{port}"))
        logging.getLogger("statusq.test").info("hello")
        message = server.recv(65536).decode()
    assert message.startswith("<30>statusq: ")  # daemon (3) * 8 + info (6)
    assert message.rstrip("\x00").endswith("statusq.test: hello")
