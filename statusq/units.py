"""Human-friendly durations and sizes in config files and CLI flags (``90s``, ``1h``, ``200MB``)."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a string such as ``250ms``, ``30s``, ``5m``, ``1h``, ``2d``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"a duration must be a number of seconds or a string like '5m', not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30, '250ms', '5m', '1h')")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and not negative, not {value!r}")
    return seconds


def parse_size(value: int | str) -> int:
    """Bytes from a number or a string such as ``200MB``, ``1.5G``, ``512k`` (powers of 1024)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"a size must be a number of bytes or a string like '200MB', not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, not {value!r}")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size (use e.g. '200MB', '1G', or bytes)")
    unit = (match.group(2) or "").lower()[:1]
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h|d)\s*$")


def parse_rate(value: str) -> tuple[float, float]:
    """``(count, period in seconds)`` from a rate such as ``"20/s"``, ``"100/m"``, ``"5/h"``."""
    if not isinstance(value, str):
        raise ValueError(f"a rate must be a string like '20/s', not {value!r}")
    match = _RATE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a rate (use e.g. '20/s', '100/m', '5/h')")
    count = float(match.group(1))
    if not math.isfinite(count) or count <= 0:
        raise ValueError(f"a rate must allow more than 0 items, not {value!r}")
    return count, _DURATION_UNITS[match.group(2)]
