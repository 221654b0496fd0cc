"""The value types the config sections share: durations, sizes, rates, addresses, and the frozen
section base.

Kept apart from the sections so that each section's module reads as its keys alone, and so that
a model outside this package (a plugin's settings, ``statusq.xmpp.settings``) can use the same
``Duration`` as the daemon's own keys without importing every section.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from statusq.units import parse_duration, parse_rate, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]


def check_rate(value: str) -> str:
    parse_rate(value)  # checked at load; kept as written, so the docs and logs show it as given
    return value


#: ``"20/s"``, ``"100/m"``, ``"5/h"`` (:func:`statusq.units.parse_rate`).
Rate = Annotated[str, AfterValidator(check_rate)]
#: Items a rate limit lets through at once beyond its steady pace (GCRA's burst; 1: evenly paced).
Burst = Annotated[int, Field(ge=1, le=1_000_000)]


def _memory_limit(value: int | str) -> int | str:
    """Keep percentages as text (resolved against the hard bound at run time); sizes as bytes."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = float(value.strip()[:-1])
        if not 0 < number <= 100:
            raise ValueError("a percentage limit must be between 0 and 100")
        return value.strip()
    return parse_size(value)


MemoryLimit = Annotated[int | str, BeforeValidator(_memory_limit)]
Size = Annotated[int, BeforeValidator(parse_size)]


# Every table of the config: an unknown key is an error (a typo must not pass as a default), and
# a loaded config cannot change under the code that read it.  A comment, not a docstring: pydantic
# would hand a docstring down to the sections that have none as their schema description.
class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _listen(value: str) -> str:
    """``host:port`` for a listening socket; port 0 picks a free one (tests)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port (e.g. 127.0.0.1:9464), got {value!r}")
    return value


Listen = Annotated[str, AfterValidator(_listen)]
