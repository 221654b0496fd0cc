"""statusq.errors: one hierarchy, messages that name file and key, exit codes for the CLI."""

from __future__ import annotations

import os

import pytest

from statusq import errors


def test_config_error_message_names_file_and_key() -> None:
    err = errors.ConfigError("unknown key", file="/etc/statusq.toml", key="queue.bogus")

    assert str(err) == "/etc/statusq.toml: queue.bogus: unknown key"
    assert (err.file, err.key, err.reason) == ("/etc/statusq.toml", "queue.bogus", "unknown key")


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [({}, "bad"), ({"file": "f.toml"}, "f.toml: bad"), ({"key": "queue.x"}, "queue.x: bad")],
)
def test_config_error_message_without_file_or_key(kwargs: dict[str, str], text: str) -> None:
    assert str(errors.ConfigError("bad", **kwargs)) == text


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.StatusqError, os.EX_SOFTWARE),
        (errors.ConfigError, os.EX_CONFIG),
        (errors.PluginError, os.EX_CONFIG),
        (errors.DataError, os.EX_DATAERR),
        (errors.DecodeError, os.EX_DATAERR),
        (errors.QueueError, os.EX_UNAVAILABLE),
        (errors.ConnectionClosed, os.EX_UNAVAILABLE),
    ],
)
def test_every_error_is_a_statusq_error_with_an_exit_code(cls: type[errors.StatusqError], code: int) -> None:
    assert issubclass(cls, errors.StatusqError)
    assert cls.exit_code == code


def test_time_limit_escapes_except_exception() -> None:
    assert issubclass(errors.ItemTimeLimitExceeded, BaseException)
    assert not issubclass(errors.ItemTimeLimitExceeded, Exception)
