"""statusq.units: durations and sizes as written in config files and CLI flags."""

from __future__ import annotations

import pytest

from statusq.units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("0.5", 0.5),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        (" 1.5 s ", 1.5),
    ],
)
def test_parse_duration_accepts(value: float | str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "soon", "5 minutes", "5x", "-5s", "1e3", "5M", "s", "1.2.3s"])
def test_parse_duration_garbage_is_refused_naming_the_value(value: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as caught:
        parse_duration(value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_duration_refuses_bool(value: bool) -> None:
    # A bool is an int to Python; `time_limit = true` must not mean one second.
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_parse_duration_refuses_negative(value: float) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(value)


def test_parse_duration_refuses_nan() -> None:
    with pytest.raises(ValueError):
        parse_duration(float("nan"))


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (512, 512),
        ("512", 512),
        ("512b", 512),
        ("1k", 1024),
        ("1KB", 1024),
        ("1KiB", 1024),
        ("200MB", 200 << 20),
        (" 10 mb ", 10 << 20),
        ("1.5G", int(1.5 * (1 << 30))),
        ("2t", 2 << 40),
    ],
)
def test_parse_size_accepts(value: int | str, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "lots", "-1MB", "1PB", "1 M B", "MB"])
def test_parse_size_garbage_is_refused_naming_the_value(value: str) -> None:
    with pytest.raises(ValueError, match="is not a size") as caught:
        parse_size(value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_size_refuses_bool(value: bool) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


def test_parse_size_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_size(-1)
