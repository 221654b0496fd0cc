"""Requests to responses: routing, the access checks, and the actions behind the forms.

Kept apart from sockets and threads (``server.py``) so that every rule here, who may read, who
may change, which requests are refused, is tested by calling :meth:`App.handle` directly.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from statusq.config import Config
from statusq.errors import StatusqError
from statusq.web import forms, pages, queues, sources
from statusq.web.auth import Access, Gate, clear_cookie, session_cookie
from statusq.web.chart import RateHistory
from statusq.web.html import Markup, render
from statusq.web.layout import CSP, STYLE, Context, page

log = logging.getLogger(__name__)
T = TypeVar("T")

DEAD_LETTER_LIMIT = 200
#: Removals remembered for the sites page; beyond this the oldest are forgotten.
REMOVED_LIMIT = 10_000
READ_PAGES = ("/", "/queues", "/deadletters", "/sites", "/pauses")


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def all_headers(self) -> dict[str, str]:
        return {
            "Content-Type": self.content_type,
            "Content-Length": str(len(self.body)),
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            **self.headers,
        }


def redirect(to: str, **headers: str) -> Response:
    return Response(303, headers={"Location": to, **headers})


class App:
    def __init__(
        self,
        config: Callable[[], Config],
        history: RateHistory,
        sampler: sources.Sampler | None = None,
        specs: queues.SpecCache | None = None,
        *,
        open_queue: sources.QueueOpener,
    ) -> None:
        self.config = config
        self.open_queue = open_queue
        self.gate = Gate(lambda: self.config().web)
        self.history = history
        self.sampler = sampler
        self.specs = specs or queues.SpecCache(config().source)
        #: When each site was removed from this page (dropped again by an add).  A removed site
        #: keeps its file, so without this the sites page would go on calling it served.
        self.removed: dict[str, float] = {}
        self._removed_lock = threading.Lock()

    # -- the entry point ---------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> Response:
        path = urlsplit(target).path
        refusal = self._refuse_origin(method, headers)
        if refusal is not None:
            return self._refused(403, refusal)
        if method == "GET" and path == "/style.css":
            return Response(200, STYLE.encode(), "text/css; charset=utf-8")
        access = self.gate.access(headers)
        if method == "GET":
            return self._get(path, access)
        if method == "POST":
            return self._post(path, access, body)
        return Response(405, b"method not allowed", "text/plain; charset=utf-8", {"Allow": "GET, POST"})

    def _refuse_origin(self, method: str, headers: Mapping[str, str]) -> str | None:
        """Requests for another host name (DNS rebinding) or, for POST, from another site."""
        host = headers.get("Host", "")
        if not self._known_host(host):
            return f"unknown host {host[:100]!r} (add it to [web] allowed_hosts)"
        if method == "POST":
            origin = headers.get("Origin")
            if origin and origin != "null" and urlsplit(origin).netloc != host:
                return "cross-origin form refused"
            if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
                return "cross-site form refused"
        return None

    def _known_host(self, host: str) -> bool:
        name = urlsplit(f"//{host}").hostname or ""
        if name == "localhost" or name in self.config().web.allowed_hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _refused(self, status: int, why: str, access: Access | None = None) -> Response:
        ctx = self._context(access or Access(read=False, write=False), "")
        return self._html(page(ctx, "Refused", render('<p class="problem">{why}</p>', why=why)), status)

    def _context(self, access: Access, path: str) -> Context:
        flash: list[str] = []
        if access.session is not None:
            flash, access.session.flash = access.session.flash, []
        return Context(access, self.gate.writable, path, flash)

    @staticmethod
    def _html(markup: Markup, status: int = 200) -> Response:
        return Response(status, markup.encode())

    # -- reading -----------------------------------------------------------------------------

    def _get(self, path: str, access: Access) -> Response:
        if path == "/login":
            return self._html(pages.login(self._context(access, path)))
        if path not in READ_PAGES:
            return self._refused(404, "no such page", access)
        if not access.read:
            return redirect("/login")
        ctx = self._context(access, path)
        config = self.config()
        if path == "/":
            backlog = _attempt(lambda: sources.backlog(self.open_queue, config))
            cluster = _attempt(lambda: sources.cluster(config))
            return self._html(pages.overview(ctx, sources.daemons(config), self._rates(), backlog, cluster))
        if path == "/queues":
            return self._html(pages.queues(ctx, _attempt(lambda: queues.views(config, self.specs.get()))))
        if path == "/deadletters":
            letters = _attempt(lambda: sources.dead_letters(self.open_queue, config, DEAD_LETTER_LIMIT))
            return self._html(pages.dead_letters(ctx, letters, DEAD_LETTER_LIMIT))
        if path == "/pauses":
            return self._html(pages.pauses(ctx, _attempt(lambda: sources.pauses(self.open_queue, config))))
        backlog = _attempt(lambda: sources.backlog(self.open_queue, config))
        seen = [] if isinstance(backlog, str) or backlog is None else [r.site for r in backlog]
        with self._removed_lock:
            removed = dict(self.removed)
        stored = _attempt(lambda: sources.removed_sites(config))
        stored = {} if isinstance(stored, str) else stored  # the page's own removals still show
        rows = _attempt(lambda: sources.sites(config, seen, removed, stored))
        return self._html(pages.sites(ctx, rows, sources.control_channel(config)))

    def _rates(self) -> pages.Rates:
        samples = self.sampler.latest if self.sampler is not None else None
        return pages.Rates(self.history.points(), self.history.window, self.history.problem, samples)

    # -- changing ----------------------------------------------------------------------------

    def _post(self, path: str, access: Access, body: bytes) -> Response:
        try:
            form = forms.parse_form(body)
        except forms.FormError as exc:
            return self._refused(400, str(exc), access)
        if path == "/login":
            return self._login(form)
        if not self.gate.writable:
            return self._refused(403, "read-only: no [web] token is configured", access)
        if not access.write:
            return self._refused(403, "log in with the token first", access)
        if not self.gate.csrf_ok(access, form):
            return self._refused(403, "missing or wrong CSRF token: reload the page and try again", access)
        if path == "/logout":
            self.gate.sessions.drop(access.session.id if access.session else None)
            return redirect("/login", **{"Set-Cookie": clear_cookie()})
        action = self._actions().get(path)
        if action is None and path.startswith("/queues/"):
            action = self._set_queue
        if action is None:
            return self._refused(404, "no such action", access)
        back = "/" + path.split("/")[1]
        try:
            message = action(path, form)
        except StatusqError as exc:  # a FormError, or the backend refused
            message = f"not done: {exc}"
        log.info("web page: %s %s: %s", path, "header token" if access.by_header else "session", message)
        if access.session is not None:
            access.session.flash.append(message)
        return redirect(back)

    def _login(self, form: dict[str, str]) -> Response:
        session = self.gate.login(form.get("token"))
        if session is None:
            log.warning("web page: login with a wrong token refused")
            ctx = self._context(Access(read=False, write=False), "/login")
            return self._html(pages.login(ctx, failed=True), 403)
        return redirect("/", **{"Set-Cookie": session_cookie(session.id)})

    def _actions(self) -> dict[str, Callable[[str, dict[str, str]], str]]:
        return {
            "/deadletters/requeue": self._requeue,
            "/deadletters/purge": self._purge,
            "/sites/add": self._site_command,
            "/sites/remove": self._site_command,
            "/sites/purge": self._purge_backlog,
            "/sites/cancel": self._cancel_item,
            "/pauses/add": self._pause,
            "/pauses/resume": self._resume,
        }

    def _set_queue(self, path: str, form: dict[str, str]) -> str:
        name = path.removeprefix("/queues/")
        spec = next((s for s in self.specs.get() if s.name == name), None)
        if spec is None:
            raise forms.FormError(f"no periodic queue {name!r}")
        current = next(v for v in queues.views(self.config(), [spec]))
        values = forms.queue_settings(form, current)
        if not values:
            return f"{name}: nothing changed"
        queues.apply_settings(self.config(), spec, values)
        said = ", ".join(f"{k} {pages.duration_field(v) if k == 'frequency' else v}" for k, v in values.items())
        return f"{name}: {said} (every daemon applies it at its next tick)"

    def _requeue(self, _path: str, form: dict[str, str]) -> str:
        ids = None if form.get("all") == "yes" else [forms.item_id(form)]
        moved = sources.requeue(self.open_queue, self.config(), ids)
        return f"requeued {moved} item(s)"

    def _purge(self, _path: str, form: dict[str, str]) -> str:
        gone = sources.purge(self.open_queue, self.config(), [forms.item_id(form)])
        return f"purged {gone} item(s)"

    def _purge_backlog(self, _path: str, form: dict[str, str]) -> str:
        site, transport = forms.site_name(form), forms.transport_name(form)
        done = sources.purge_backlog(self.open_queue, self.config(), site, transport)
        what = f"{site}" + (f" ({transport})" if transport else "")
        count = "an unknown number of" if done.removed is None else str(done.removed)
        return f"purged {count} queued item(s) of {what}; those in hand or on a broker are dropped when they arrive"

    def _cancel_item(self, _path: str, form: dict[str, str]) -> str:
        item = forms.item_id(form)
        done = sources.cancel_items(self.open_queue, self.config(), [item])
        if done.removed:
            return f"cancelled item {item}: deleted from the queue"
        if done.remembered:
            return f"cancelled item {item}: it is dropped when it arrives"
        return f"item {item} is not queued here (done, dead or unknown)"

    def _pause(self, _path: str, form: dict[str, str]) -> str:
        done = sources.pause(self.open_queue, self.config(), forms.pause_scope(form), forms.reason(form))
        return f"{done.describe()}: every daemon holds its items from its next re-read"

    def _resume(self, _path: str, form: dict[str, str]) -> str:
        scope = forms.pause_scope(form)
        what = " ".join(next(iter(scope.items())))
        return f"{what} resumed" if sources.resume(self.open_queue, self.config(), scope) else f"{what} was not paused"

    def _site_command(self, path: str, form: dict[str, str]) -> str:
        config = self.config()
        unavailable = sources.control_channel(config)
        if unavailable is not None:
            raise forms.FormError(unavailable)
        command = "update-site" if path.endswith("/add") else "remove-site"
        site = forms.site_name(form)
        text = f"{command} {site}"
        sources.send_control(self.open_queue, config, text)
        with self._removed_lock:
            self.removed.pop(site, None)
            if command == "remove-site":
                self.removed[site] = time.time()
                while len(self.removed) > REMOVED_LIMIT:
                    del self.removed[next(iter(self.removed))]
        message = f"sent to every daemon: {text}"
        if command == "update-site" and config.sites.require_file and not sources.site_file(config, site).exists():
            # The daemons re-read a file that is not there: the site is as unknown as before.
            message += f" (but there is no {sources.site_file(config, site)} here: its items stay refused)"
        return message


def _attempt(read: Callable[[], T]) -> T | str:
    """What a source returned, or why it failed, for the page to show instead."""
    try:
        return read()
    except StatusqError as exc:
        return str(exc)
