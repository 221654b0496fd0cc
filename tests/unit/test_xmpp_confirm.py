"""statusq.xmpp.confirm: codes, the reply command, and the store's verdicts on a fake clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq.xmpp.confirm import (
    ALPHABET,
    CODE_LENGTH,
    ConfirmCommand,
    ConfirmStore,
    Verdict,
    describe_duration,
    new_code,
    parse_command,
)

SITE, ADDRESS = "shop.example", "carol@example.org"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[ConfirmStore]:
    store = ConfirmStore.open(f"sqlite:///{tmp_path / 'confirm.sqlite'}", clock=clock)
    yield store
    store.close()


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ("confirm ABCD2345", ConfirmCommand("ABCD2345")),
        ("  Confirm abcd2345  ", ConfirmCommand("ABCD2345")),
        ("CONFIRM abcd 2345", ConfirmCommand("ABCD2345")),
        ("confirm ABCD-2345", ConfirmCommand("ABCD2345")),
        ("/confirm ABCD2345", ConfirmCommand("ABCD2345")),
        ("confirm", ConfirmCommand(None)),
        ("confirm   ", ConfirmCommand(None)),
        ("confirm\nABCD2345", ConfirmCommand("ABCD2345")),
    ],
)
def test_confirm_commands_are_recognised(body: str, command: ConfirmCommand) -> None:
    assert parse_command(body) == command


@pytest.mark.parametrize("body", ["hello", "confirmed!", "please confirm ABCD2345", "confirmation", ""])
def test_other_text_is_not_a_command(body: str) -> None:
    assert parse_command(body) is None


def test_codes_use_an_unambiguous_alphabet() -> None:
    codes = {new_code() for _ in range(200)}

    assert len(codes) == 200
    assert all(len(code) == CODE_LENGTH and set(code) <= set(ALPHABET) for code in codes)
    assert not set("01OIL") & set(ALPHABET)


def test_the_right_code_in_time_confirms(store: ConfirmStore, clock: Clock) -> None:
    code = store.issue(SITE, ADDRESS, ttl=60, user_ref="u1")
    pending = store.status(SITE, ADDRESS)
    assert pending is not None and pending.pending and not pending.confirmed
    assert pending.expires_at == clock.now + 60

    clock.now += 59
    assert store.check(SITE, ADDRESS, code.lower(), max_failures=5) is Verdict.CONFIRMED

    done = store.status(SITE, ADDRESS)
    assert done is not None and done.confirmed and not done.pending
    assert (done.confirmed_at, done.user_ref) == (clock.now, "u1")
    # The code was used up: replying it again finds nothing pending
    assert store.check(SITE, ADDRESS, code, max_failures=5) is Verdict.NONE_PENDING


def test_an_expired_code_is_refused_even_when_right(store: ConfirmStore, clock: Clock) -> None:
    code = store.issue(SITE, ADDRESS, ttl=60)

    clock.now += 60
    assert store.check(SITE, ADDRESS, code, max_failures=5) is Verdict.EXPIRED
    assert store.check(SITE, ADDRESS, code, max_failures=5) is Verdict.EXPIRED  # and stays so
    status = store.status(SITE, ADDRESS)
    assert status is not None and not status.confirmed


def test_wrong_codes_count_and_void_the_confirmation(store: ConfirmStore) -> None:
    code = store.issue(SITE, ADDRESS, ttl=60)

    assert store.check(SITE, ADDRESS, "WRONG234", max_failures=3) is Verdict.WRONG
    assert store.check(SITE, ADDRESS, "WRONG234", max_failures=3) is Verdict.WRONG
    assert store.check(SITE, ADDRESS, "WRONG234", max_failures=3) is Verdict.VOIDED
    # Not even the right code works any more
    assert store.check(SITE, ADDRESS, code, max_failures=3) is Verdict.NONE_PENDING


def test_a_code_belongs_to_its_site_and_address(store: ConfirmStore) -> None:
    code = store.issue(SITE, ADDRESS, ttl=60)

    assert store.check("other.example", ADDRESS, code, max_failures=5) is Verdict.NONE_PENDING
    assert store.check(SITE, "mallory@example.org", code, max_failures=5) is Verdict.NONE_PENDING
    assert store.check(SITE, ADDRESS, code, max_failures=5) is Verdict.CONFIRMED


def test_a_new_request_replaces_the_code_and_unconfirms(store: ConfirmStore) -> None:
    # Given an address confirmed once
    first = store.issue(SITE, ADDRESS, ttl=60, user_ref="u1")
    assert store.check(SITE, ADDRESS, first, max_failures=5) is Verdict.CONFIRMED

    # When it is claimed again (perhaps by someone else), and a wrong guess was made meanwhile
    letters = itertools.cycle("ABC")
    store.choice = lambda alphabet: next(letters)
    second = store.issue(SITE, ADDRESS, ttl=60, user_ref="u2")
    assert second == "ABCABCAB"

    # Then it is unconfirmed until the new code comes back; the old one is worthless
    status = store.status(SITE, ADDRESS)
    assert status is not None and not status.confirmed and status.user_ref == "u2"
    assert store.check(SITE, ADDRESS, first, max_failures=5) is Verdict.WRONG
    assert store.check(SITE, ADDRESS, second, max_failures=5) is Verdict.CONFIRMED


def test_codes_are_not_stored_in_clear(store: ConfirmStore, tmp_path: Path) -> None:
    code = store.issue(SITE, ADDRESS, ttl=60)

    files = list(tmp_path.glob("confirm.sqlite*"))  # the database and its write-ahead log
    assert files and not any(code.encode() in path.read_bytes() for path in files)
    assert ADDRESS.encode() in b"".join(path.read_bytes() for path in files)  # the row is there


def test_nothing_pending_for_an_unknown_address(store: ConfirmStore) -> None:
    assert store.status(SITE, ADDRESS) is None
    assert store.check(SITE, ADDRESS, "ABCD2345", max_failures=5) is Verdict.NONE_PENDING


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(86400, "1 day"), (172800, "2 days"), (3600, "1 hour"), (5400, "90 minutes"), (600, "10 minutes"),
     (60, "1 minute"), (90, "90 seconds"), (1, "1 second"), (0.2, "1 second")],
)  # fmt: skip
def test_validity_reads_naturally(seconds: float, text: str) -> None:
    assert describe_duration(seconds) == text
