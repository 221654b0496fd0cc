"""How many times an item is tried, how long it waits in between, and how long it may run:
per transport, resolved once when a worker starts."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from statusq.config import Config, HandlerSettings, QueueConfig
from statusq.registry import HandlerRegistry

_rng = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    delay: float
    delay_max: float

    @classmethod
    def from_config(cls, queue: QueueConfig) -> RetryPolicy:
        return cls(queue.max_retries, queue.retry_delay, queue.retry_delay_max)

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def gives_up(self, attempt: int) -> bool:
        """True when the attempt that just failed was the last one allowed."""
        return attempt >= self.max_attempts

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential, capped, with jitter so retries of a failed batch do not arrive together."""
        base = min(self.delay_max, self.delay * 2.0 ** max(0, attempt - 1))
        return base * (rng or _rng).uniform(0.8, 1.0)


@dataclass(frozen=True, slots=True)
class TransportPolicy:
    """How a worker runs one transport's items, resolved once at start (no merging per item)."""

    retry: RetryPolicy
    #: Seconds an item may run before it is interrupted; 0: no limit.
    time_limit: float
    #: Seconds after its enqueue an item of this transport is no longer started (dead-lettered as
    #: expired, as an enqueue's own ``expires``); 0: never.
    expires: float = 0.0


class Policies:
    """Each transport's policy, looked up per item: one dict lookup, the default for a transport
    nobody configured (or nobody handles)."""

    __slots__ = ("_by_transport", "default")

    def __init__(self, default: TransportPolicy, by_transport: Mapping[str, TransportPolicy] | None = None) -> None:
        self.default = default
        self._by_transport = dict(by_transport or {})

    def of(self, transport: str) -> TransportPolicy:
        return self._by_transport.get(transport, self.default)

    def time_limit(self, transport: str) -> float:
        return self._by_transport.get(transport, self.default).time_limit

    def items(self) -> list[tuple[str, TransportPolicy]]:
        return sorted(self._by_transport.items())


def _pick(field: str, layers: tuple[HandlerSettings | None, ...], default: Any) -> Any:
    """The first value set, from the highest-precedence layer down, else ``default``."""
    for layer in layers:
        value = getattr(layer, field) if layer is not None else None
        if value is not None:
            return value
    return default


def resolve_policies(config: Config, registry: HandlerRegistry, *, timed: bool = True) -> Policies:
    """Per transport: ``[transports.NAME]`` over ``register_handler``'s settings over the
    ``[queue]``/``[daemon]`` defaults.  ``timed=False``: no time limit at all (the inline
    backend runs handlers inside the application's own call, where SIGALRM is not ours)."""
    queue = config.queue
    default = TransportPolicy(RetryPolicy.from_config(queue), config.daemon.time_limit if timed else 0.0)
    resolved = {}
    for transport in registry.transports() | set(config.transports):
        registration = registry.get(transport)
        layers = (config.transports.get(transport), registration.settings if registration else None)
        resolved[transport] = TransportPolicy(
            RetryPolicy(
                _pick("max_retries", layers, queue.max_retries),
                _pick("retry_delay", layers, queue.retry_delay),
                _pick("retry_delay_max", layers, queue.retry_delay_max),
            ),
            _pick("time_limit", layers, config.daemon.time_limit) if timed else 0.0,
            _pick("expires", layers, 0.0),
        )
    return Policies(default, resolved)
