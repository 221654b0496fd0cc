"""Who may read and who may change: the ``[web] token``, sessions and CSRF tokens.

A person logs in once with the token and gets a session cookie (HttpOnly, so no script can read
it; SameSite=Strict, so no other site's page sends it).  Each session has its own CSRF token,
put in every form as a hidden field and compared in constant time: a forged form from elsewhere
has the cookie stripped by SameSite *and* lacks the CSRF token, either of which is enough to
refuse it.  A script may instead send ``Authorization: Bearer <token>``; a browser never adds
that header to a cross-site request, so such requests need no CSRF token.

Sessions live in the supervisor's memory: a restart logs everybody out, which is fine for an
admin page and means there is nothing on disk to steal.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from statusq.config import WebConfig

COOKIE = "statusq_session"
#: A session lasts this long after login; then the token is asked again.
SESSION_TTL = 12 * 3600.0
#: More live sessions than this and the oldest are dropped (a login loop must not grow memory).
MAX_SESSIONS = 1000


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    created: float
    #: The token it logged in with: a reload that changes the token ends the session.
    token: str = ""
    #: Messages for the next page shown (the result of a POST, after its redirect).
    flash: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Access:
    """What one request may do."""

    read: bool
    write: bool
    session: Session | None = None
    #: Authenticated by the Authorization header: no CSRF token needed (see the module docstring).
    by_header: bool = False


def same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; a missing value never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def parse_cookies(header: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            found.setdefault(name, value)
    return found


def session_cookie(session_id: str, *, max_age: int = int(SESSION_TTL)) -> str:
    return f"{COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"


def clear_cookie() -> str:
    return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"


class Sessions:
    """Logged-in browsers, by the random id in their cookie."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._now = clock

    def create(self, token: str) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._now(), token)
        with self._lock:
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and self._now() - session.created > SESSION_TTL:
                del self._sessions[session_id]
                return None
            return session

    def drop(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)


class Gate:
    """Decides :class:`Access` for a request from the config, its cookie and its headers."""

    def __init__(self, config: Callable[[], WebConfig], sessions: Sessions | None = None) -> None:
        self._config = config  # read per request: a reload (SIGHUP) may change the token
        self.sessions = sessions or Sessions()

    @property
    def config(self) -> WebConfig:
        return self._config()

    @property
    def writable(self) -> bool:
        """Without a token nothing may be changed from the page, by anyone."""
        return self.config.token is not None

    def login(self, token: str | None) -> Session | None:
        """A fresh session (never one the browser brought: no fixation) for the right token."""
        expected = self.config.token
        return self.sessions.create(expected) if expected is not None and same(token, expected) else None

    def access(self, headers: Mapping[str, str]) -> Access:
        config = self.config
        token = config.token
        # Without a token there is nobody to log in: the page is read-only for everyone.
        open_read = config.anonymous_read or token is None
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer ") and same(auth.removeprefix("Bearer ").strip(), token):
            return Access(read=True, write=True, by_header=True)
        session = self.sessions.get(parse_cookies(headers.get("Cookie")).get(COOKIE)) if token else None
        if session is not None and same(session.token, token):
            return Access(read=True, write=True, session=session)
        return Access(read=open_read, write=False)

    @staticmethod
    def csrf_ok(access: Access, form: Mapping[str, str]) -> bool:
        """A state-changing request carries its session's CSRF token (header-authenticated: none needed)."""
        if access.by_header:
            return True
        return access.session is not None and same(form.get("csrf"), access.session.csrf)
