"""Address confirmation: a code sent over XMPP, and the reply ``confirm CODE`` that proves the
address belongs to whoever asked.

StatusNet's XmppConfirmManager polled a table for addresses to confirm; here a ``xmppconfirm``
item starts the flow, so it rides the queue's retries like any other work.  The state is one row
per (site, address) in the same database as the queue (``[queue] db_url``), in SQLAlchemy Core,
so the application can read ``confirmed_at`` directly or call :meth:`ConfirmStore.status`.

Codes are stored hashed (a leaked table gives away no pending code), expire after the site's
``confirm_ttl``, and are voided after ``confirm_max_failures`` wrong guesses.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Engine, Float, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from statusq.queues.db.engine import create_tables, db_errors, make_engine

#: Letters and digits that cannot be mistaken for one another (no 0/O, 1/I/L).
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8

metadata = MetaData()

confirmations = Table(
    "statusq_xmpp_confirm",
    metadata,
    Column("site", String(255), primary_key=True),
    Column("address", String(1023), primary_key=True),  # bare JID, normalised (lowercase user@domain)
    Column("user_ref", String(255)),  # the application's own reference, from the request
    Column("code_hash", String(64)),  # sha256 of site, address and code; NULL: nothing pending
    Column("requested_at", Float),
    Column("expires_at", Float),
    Column("failures", Integer, nullable=False, default=0),
    Column("confirmed_at", Float),  # NULL until the right code came back in time
)


class Verdict(enum.Enum):
    """What a ``confirm CODE`` reply achieved; each has the text the user is sent back."""

    CONFIRMED = "confirmed"
    WRONG = "wrong"
    EXPIRED = "expired"
    VOIDED = "voided"  # this wrong code was one too many: the pending code is gone
    NONE_PENDING = "none-pending"


REPLIES = {
    Verdict.CONFIRMED: "Confirmed: {address} is now your address on {site}.",
    Verdict.WRONG: "Error: wrong confirmation code. Check it and try again.",
    Verdict.EXPIRED: "Error: that confirmation code has expired. Ask {site} for a new one.",
    Verdict.VOIDED: "Error: too many wrong codes; this confirmation is cancelled. Ask {site} for a new one.",
    Verdict.NONE_PENDING: "Error: no confirmation is pending for {address} on {site}.",
}
USAGE = 'Error: reply "confirm CODE" with the code you were sent.'


@dataclass(frozen=True, slots=True)
class ConfirmCommand:
    """A chat message that asks to confirm; ``code`` is None when it carried none."""

    code: str | None


_COMMAND = re.compile(r"^\s*/?confirm(?:\s+(?P<rest>.*?))?\s*$", re.IGNORECASE | re.DOTALL)


def parse_command(body: str) -> ConfirmCommand | None:
    """``confirm CODE`` (any case, spaces or dashes inside the code) → the command; None for
    any other text, which is an ordinary incoming message."""
    match = _COMMAND.match(body)
    if match is None:
        return None
    rest = match.group("rest")
    return ConfirmCommand(normalize_code(rest) if rest else None)


def normalize_code(text: str) -> str:
    return re.sub(r"[\s-]+", "", text).upper()


def new_code(choice: Callable[[str], str] = secrets.choice, length: int = CODE_LENGTH) -> str:
    return "".join(choice(ALPHABET) for _ in range(length))


def _hash(site: str, address: str, code: str) -> str:
    return hashlib.sha256(f"{site}\0{address}\0{normalize_code(code)}".encode()).hexdigest()


def describe_duration(seconds: float) -> str:
    """``86400`` → ``"24 hours"``: the validity as the user reads it in the message."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size or seconds == size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    count = max(1, round(seconds))
    return f"{count} second{'s' if count != 1 else ''}"


@dataclass(frozen=True, slots=True)
class AddressStatus:
    site: str
    address: str
    user_ref: str | None
    confirmed_at: float | None
    pending: bool
    expires_at: float | None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


class ConfirmStore:
    """The confirmation rows; ``clock`` (wall-clock seconds) and ``choice`` are injectable so
    expiry and codes test without waiting or guessing."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        choice: Callable[[str], str] = secrets.choice,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.choice = choice

    @classmethod
    def open(cls, db_url: str, *, clock: Callable[[], float] = time.time) -> ConfirmStore:
        """The store in the database at ``db_url`` (the queue's), its table created if missing."""
        store = cls(make_engine(db_url), clock=clock)
        store.create_tables()
        return store

    def create_tables(self) -> None:
        create_tables(self.engine, metadata)

    @contextmanager
    def errors(self) -> Iterator[None]:
        with db_errors(self.engine):
            yield

    def _key(self, site: str, address: str) -> ColumnElement[bool]:
        return (confirmations.c.site == site) & (confirmations.c.address == address)

    def issue(self, site: str, address: str, ttl: float, user_ref: str | None = None) -> str:
        """A new code for ``address``, replacing any pending one; the address is unconfirmed
        until the code comes back (someone new may be claiming it)."""
        code = new_code(self.choice)
        now = self.clock()
        values = {
            "user_ref": user_ref,
            "code_hash": _hash(site, address, code),
            "requested_at": now,
            "expires_at": now + ttl,
            "failures": 0,
            "confirmed_at": None,
        }
        with self.errors(), self.engine.begin() as conn:
            # Only the xmpp group's one worker writes here, so update-else-insert cannot race.
            if not conn.execute(update(confirmations).where(self._key(site, address)).values(values)).rowcount:
                conn.execute(insert(confirmations).values(site=site, address=address, **values))
        return code

    def check(self, site: str, address: str, code: str, max_failures: int) -> Verdict:
        """Judge a reply's code; a right one in time confirms, a wrong one counts."""
        now = self.clock()
        with self.errors(), self.engine.begin() as conn:
            row = conn.execute(select(confirmations).where(self._key(site, address))).mappings().first()
            if row is None or row["code_hash"] is None:
                return Verdict.NONE_PENDING
            if now >= row["expires_at"]:
                return Verdict.EXPIRED  # kept, so every later try hears "expired" too
            if hmac.compare_digest(row["code_hash"], _hash(site, address, code)):
                self._clear(conn, site, address, {"confirmed_at": now})
                return Verdict.CONFIRMED
            failures = row["failures"] + 1
            if failures >= max_failures:
                self._clear(conn, site, address, {"failures": failures})
                return Verdict.VOIDED
            conn.execute(update(confirmations).where(self._key(site, address)).values(failures=failures))
            return Verdict.WRONG

    def _clear(self, conn: Connection, site: str, address: str, values: dict[str, object]) -> None:
        statement = update(confirmations).where(self._key(site, address))
        conn.execute(statement.values(code_hash=None, expires_at=None, **values))

    def status(self, site: str, address: str) -> AddressStatus | None:
        with self.errors(), self.engine.connect() as conn:
            row = conn.execute(select(confirmations).where(self._key(site, address))).mappings().first()
        if row is None:
            return None
        return AddressStatus(
            site=row["site"],
            address=row["address"],
            user_ref=row["user_ref"],
            confirmed_at=row["confirmed_at"],
            pending=row["code_hash"] is not None,
            expires_at=row["expires_at"],
        )

    def close(self) -> None:
        self.engine.dispose()
