"""What the fuzzers feed: each target takes raw bytes from outside and may fail only with the
error statusq documents for that input (a ``DataError``, a ``ConfigError``...).  Anything else
escaping — an IndexError, a RecursionError, a hang — is a bug: in a worker it would be an item
lost to an internal error instead of dead-lettered with its reason, or a daemon that dies on a
config file instead of naming what is wrong in it.

Run by ``make fuzz`` (atheris, coverage-guided, minutes per target) and, replaying the saved
corpus and a few thousand new inputs each, by the suite (tests/unit/test_fuzz_corpus.py,
tests/integration/test_fuzz_short.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import stomp.utils

from statusq import codec
from statusq.commands import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, accept, sign
from statusq.config import load_config
from statusq.errors import ConfigError, DataError
from statusq.queues.stomp import frames, wire
from statusq.queues.stomp.destinations import Destinations

CONTENT_TYPES = ("application/json", "application/xml", "text/xml", "application/atom+xml", "text/plain")


def stomp_frame(data: bytes) -> None:
    """Our frame reader gives exactly what stomp.py's gives (or fails where stomp.py fails)."""
    try:
        expected = stomp.utils.parse_frame(data)
    except Exception as exc:  # stomp.py's own failure: ours must fail too, and alike
        try:
            frames.parse_frame(data)
        except type(exc):
            return
        raise AssertionError(f"stomp.py raised {exc!r}, ours did not") from None
    got = frames.parse_frame(data)
    if expected is None or got is None:
        assert expected is got, (expected, got)
        return
    assert (got.cmd, got.headers, got.body) == (expected.cmd, expected.headers, expected.body)


_ROUTES = Destinations("/queue/statusq/", ["main/distrib", "main/distrib/big.example.org"])


def broker_message(data: bytes) -> None:
    """A MESSAGE frame from the broker becomes a Delivery without raising, whatever its headers
    say, and one the processor can turn into an item (its times in range)."""
    frame = frames.parse_frame(data)
    if frame is None:
        return
    delivery = wire.to_delivery(dict(frame.headers), frame.body, _ROUTES, "default", 1)
    datetime.fromtimestamp(delivery.enqueued_at, UTC)
    assert delivery.attempt >= 1 and (delivery.priority is None or 0 <= delivery.priority <= 9)


def item_body(data: bytes) -> None:
    """A queue item's body under each content type: decoded, or a DecodeError (a DataError)."""
    content_type = CONTENT_TYPES[data[0] % len(CONTENT_TYPES)] if data else CONTENT_TYPES[0]
    with contextlib.suppress(DataError):
        codec.decode(data[1:], content_type)


def control_message(data: bytes) -> None:
    """A control message off the channel: a command, or a DataError saying what was wrong.  The
    first byte picks how it arrives: signed right (so the text reaches the parser), unsigned to a
    worker without a secret, or with headers made of the input (against the signature check)."""
    channel, secret = "/topic/statusq.control", "fuzz-control-secret-0123"
    mode, rest = (data[0] % 3, data[1:]) if data else (0, b"")
    headers = {"destination": channel}
    if mode == 0:
        headers.update(sign(rest.decode("utf-8", "replace"), secret, now=1_000_000.0, nonce="n"))
    elif mode == 2:
        parts = [*rest.split(b"\0", 3), b"", b"", b""]
        headers.update(
            {
                k: v.decode("utf-8", "replace")
                for k, v in zip((TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER), parts[:3], strict=True)
            }
        )
        rest = parts[3]
    with contextlib.suppress(DataError):
        accept(headers, rest, channel=channel, secret=None if mode == 1 else secret, now=1_000_000.0)


_CONFIG = Path(tempfile.gettempdir()) / f"statusq-fuzz-{os.getpid()}.toml"


def config_file(data: bytes) -> None:
    """A statusq.toml: a Config, or a ConfigError naming the file."""
    _CONFIG.write_bytes(data)
    try:
        load_config(_CONFIG)
    except ConfigError as exc:
        assert str(_CONFIG) in str(exc), f"the error does not name the file: {exc}"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "stomp_frame": stomp_frame,
    "broker_message": broker_message,
    "item_body": item_body,
    "control_message": control_message,
    "config_file": config_file,
}
