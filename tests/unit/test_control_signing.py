"""Signed control commands (issue 17): an unsigned, wrongly signed, stale, future or replayed
command is refused with its reason; a daemon on a broker will not start with an unsigned channel."""

from __future__ import annotations

import pytest

from statusq.commands import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, ReplayGuard, accept, sign
from statusq.config import Config
from statusq.control import check_signing
from statusq.errors import ConfigError, DataError

CHANNEL = "/topic/statusq.control"
SECRET = "0123456789abcdef-secret"
NOW = 1_800_000_000.0


def message(text: str = "shutdown", *, secret: str = SECRET, at: float = NOW, nonce: str = "n1") -> dict[str, str]:
    return {"destination": CHANNEL, **sign(text, secret, now=at, nonce=nonce)}


def check(headers: dict[str, str], body: bytes = b"shutdown", guard: ReplayGuard | None = None) -> str:
    return accept(headers, body, channel=CHANNEL, secret=SECRET, guard=guard or ReplayGuard(60), now=NOW).command


def test_a_signed_fresh_command_is_accepted() -> None:
    assert check(message()) == "shutdown"


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"destination": CHANNEL}, b"shutdown", "unsigned"),
        (message(secret="another-secret-of-16+"), b"shutdown", "wrong signature"),
        (message("reload"), b"shutdown", "wrong signature"),  # a signature lifted onto another command
        ({**message(), TIMESTAMP_HEADER: f"{NOW + 1:.3f}"}, b"shutdown", "wrong signature"),  # its time changed
        ({**message(), NONCE_HEADER: "n2"}, b"shutdown", "wrong signature"),
        ({**message(), SIGNATURE_HEADER: "é" * 64}, b"shutdown", "wrong signature"),
        (message(at=NOW - 61), b"shutdown", "stale control message: signed 61s ago"),
        (message(at=NOW + 120), b"shutdown", "signed 120s ahead"),
    ],
)
def test_a_command_that_is_not_signed_right_now_is_refused(headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(DataError, match=reason):
        check(headers, body)


def test_a_replayed_command_is_refused_while_it_could_still_pass_as_fresh() -> None:
    guard = ReplayGuard(60)
    captured = message()
    assert check(captured, guard=guard) == "shutdown"
    with pytest.raises(DataError, match="replayed"):
        check(captured, guard=guard)
    # Another command, its own nonce: fine
    assert check(message(nonce="n2"), guard=guard) == "shutdown"


def test_the_guard_forgets_nonces_once_their_commands_are_stale_anyway() -> None:
    guard = ReplayGuard(60)
    guard.admit("old", NOW, NOW)
    guard.admit("new", NOW + 100, NOW + 100)
    assert set(guard._seen) == {"new"}


def stomp(**values: object) -> Config:
    return Config.model_validate({"queue": {"subsystem": "stomp", "stomp": values}})


def test_a_daemon_on_a_broker_refuses_an_unsigned_control_channel() -> None:
    with pytest.raises(ConfigError, match="without control_secret") as refused:
        check_signing(stomp())
    assert refused.value.key == "queue.stomp.control_secret"
    check_signing(stomp(control_secret=SECRET))
    check_signing(stomp(control_unsigned=True))  # said explicitly: allowed, with a warning
    check_signing(stomp(control_channel=""))  # no channel at all
    check_signing(Config.model_validate({"queue": {"subsystem": "db"}}))  # no broker to share


def test_a_short_secret_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        stomp(control_secret="s3cret")
