"""The page's rules, request by request, against a real SQLite queue (no sockets, no browser)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from statusq.config import Config
from statusq.periodic import QueueSpec, declare
from statusq.queues import Subscription
from statusq.queues.db.control import DBControlChannel
from statusq.runtime import Runtime
from statusq.web.app import App, Response
from statusq.web.auth import COOKIE
from statusq.web.chart import RateHistory

TOKEN = "a-token-of-twenty-chars"
HOST = {"Host": "127.0.0.1:9465"}
BODY = '{"x": "<script>alert(1)</script>"}'


class FixedSpecs:
    def __init__(self, specs: list[QueueSpec]) -> None:
        self.specs = specs

    def get(self) -> list[QueueSpec]:
        return self.specs


def make_config(tmp_path: Path, **web: Any) -> Config:
    return Config.model_validate(
        {
            "var_dir": str(tmp_path / "var"),
            "queue": {"subsystem": "db", "db_url": f"sqlite:///{tmp_path / 'q.sqlite'}"},
            "sites": {"dir": str(tmp_path / "sites")},
            "metrics": {"enabled": False},
            "web": {"enabled": True, **web},
        }
    )


def make_app(config: Config) -> App:
    spec = declare("cron", transport="count", plugin="p", frequency="5m", items=3)
    return App(
        lambda: config,
        RateHistory(600),
        None,
        FixedSpecs([spec]),  # type: ignore[arg-type]
        open_queue=lambda c: Runtime(c).queue_manager(),
    )


def dead_letter(config: Config, body: str = BODY) -> str:
    with Runtime(config).queue_manager() as qm:
        qm.enqueue(body, "count", site="example.org", content_type="application/json")
        consumer = qm.subscribe(Subscription())
        delivery = consumer.fetch()
        assert delivery is not None
        consumer.dead_letter(delivery, "reason <b>bold</b>")
        consumer.close()
        return qm.dead_letters()[0].id


def dead_ids(config: Config) -> list[str]:
    with Runtime(config).queue_manager() as qm:
        return [d.id for d in qm.dead_letters()]


def login(app: App) -> tuple[dict[str, str], str]:
    response = app.handle("POST", "/login", HOST, urlencode({"token": TOKEN}).encode())
    assert response.status == 303
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    page = app.handle("GET", "/deadletters", {**HOST, "Cookie": session})
    found = re.search(r'name="csrf" value="([^"]+)"', page.body.decode())
    assert found is not None
    return {**HOST, "Cookie": session}, found.group(1)


def post(app: App, path: str, headers: dict[str, str], **form: str) -> Response:
    return app.handle("POST", path, headers, urlencode(form).encode())


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, token=TOKEN)


def test_reading_needs_a_login_unless_anonymous_read(tmp_path: Path, config: Config) -> None:
    app = make_app(config)
    assert app.handle("GET", "/", HOST).headers["Location"] == "/login"
    assert app.handle("GET", "/login", HOST).status == 200
    open_app = make_app(make_config(tmp_path, token=TOKEN, anonymous_read=True))
    page = open_app.handle("GET", "/queues", HOST)
    assert page.status == 200
    assert "cron" in page.body.decode() and 'action="/queues/cron"' not in page.body.decode()


def test_a_wrong_token_is_refused(config: Config) -> None:
    response = post(make_app(config), "/login", HOST, token="wrong-token-of-20-chars")
    assert response.status == 403 and "Set-Cookie" not in response.headers


def test_every_response_has_the_security_headers(config: Config) -> None:
    headers = make_app(config).handle("GET", "/login", HOST).all_headers()
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' covers scripts
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"


def test_a_dead_letter_body_and_reason_are_shown_as_text(config: Config) -> None:
    dead_letter(config)
    app = make_app(config)
    headers, _ = login(app)
    page = app.handle("GET", "/deadletters", headers).body.decode()
    assert "<script" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "reason &lt;b&gt;bold&lt;/b&gt;" in page


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(config: Config) -> None:
    letter = dead_letter(config)
    app = make_app(config)
    headers, csrf = login(app)
    assert post(app, "/deadletters/purge", headers, id=letter).status == 403
    assert post(app, "/deadletters/purge", headers, id=letter, csrf="forged").status == 403
    assert post(app, "/deadletters/purge", HOST, id=letter, csrf=csrf).status == 403  # no cookie
    assert dead_ids(config) == [letter]
    assert post(app, "/deadletters/purge", headers, id=letter, csrf=csrf).status == 303
    assert dead_ids(config) == []


def test_requeue_puts_the_item_back_and_says_so(config: Config) -> None:
    letter = dead_letter(config)
    app = make_app(config)
    headers, csrf = login(app)
    assert post(app, "/deadletters/requeue", headers, id=letter, csrf=csrf).headers["Location"] == "/deadletters"
    assert dead_ids(config) == []
    assert "requeued 1 item(s)" in app.handle("GET", "/deadletters", headers).body.decode()
    with Runtime(config).queue_manager() as qm:
        assert sum(r.ready for r in qm.backlog()) == 1


def test_the_queue_form_stores_what_statusq_queues_shows(config: Config) -> None:
    from statusq.dispatcher.store import DispatchStore

    app = make_app(config)
    headers, csrf = login(app)
    response = post(app, "/queues/cron", headers, csrf=csrf, enabled="no", frequency="30s", items="7")
    assert response.status == 303
    store = DispatchStore(config.db_url)
    try:
        row = store.row("cron")
    finally:
        store.close()
    assert row is not None and (row.enabled, row.frequency, row.items) == (False, 30.0, 7)
    page = app.handle("GET", "/queues", headers).body.decode()
    assert "cron: enabled False, frequency 30s, items 7" in page


def test_a_bad_form_value_is_reported_and_not_stored(config: Config) -> None:
    app = make_app(config)
    headers, csrf = login(app)
    post(app, "/queues/cron", headers, csrf=csrf, enabled="yes", frequency="soon", items="3")
    page = app.handle("GET", "/queues", headers).body.decode()
    assert "not done: frequency" in page
    assert re.search(r"<td>cron</td><td>serial</td><td>yes</td><td>5m</td>", page)


def test_without_a_token_nothing_can_be_changed(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    letter = dead_letter(config)
    app = make_app(config)
    assert app.handle("GET", "/deadletters", HOST).status == 200
    assert post(app, "/deadletters/purge", HOST, id=letter).status == 403
    assert dead_ids(config) == [letter]


def test_the_bearer_header_may_change_without_a_session(config: Config) -> None:
    letter = dead_letter(config)
    app = make_app(config)
    headers = {**HOST, "Authorization": f"Bearer {TOKEN}"}
    assert post(app, "/deadletters/purge", headers, id=letter).status == 303
    assert dead_ids(config) == []


def test_foreign_host_names_and_cross_site_posts_are_refused(config: Config) -> None:
    app = make_app(config)
    assert app.handle("GET", "/login", {"Host": "evil.example:9465"}).status == 403
    assert app.handle("GET", "/login", {"Host": "localhost:9465"}).status == 200
    headers, csrf = login(app)
    for extra in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        assert post(app, "/logout", {**headers, **extra}, csrf=csrf).status == 403
    assert post(app, "/logout", {**headers, "Origin": "http://127.0.0.1:9465"}, csrf=csrf).status == 303


def test_sites_cannot_be_changed_without_a_control_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given STOMP with no control channel (the database backend has one: a table)
    config = Config.model_validate(
        {
            "var_dir": str(tmp_path / "var"),
            "queue": {"subsystem": "stomp", "stomp": {"control_channel": ""}},
            "sites": {"dir": str(tmp_path / "sites")},
            "metrics": {"enabled": False},
            "web": {"enabled": True, "token": TOKEN},
        }
    )
    monkeypatch.setattr("statusq.web.sources.backlog", lambda _open, _config: [])
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "example.org.toml").write_text("enabled = true\n")
    (tmp_path / "sites" / "broken.example.toml").write_text("enabled = [\n")
    app = make_app(config)
    headers, csrf = login(app)
    page = app.handle("GET", "/sites", headers).body.decode()
    assert "<td>example.org</td><td>served</td>" in page
    assert "broken.example" in page and "broken config" in page
    assert "no control channel configured" in page and 'action="/sites/add"' not in page
    post(app, "/sites/add", headers, csrf=csrf, site="new.example")
    assert (
        "not done: no control channel configured ([queue.stomp] control_channel)"
        in app.handle("GET", "/sites", headers).body.decode()
    )


def test_on_the_database_backend_sites_are_removed_through_its_control_table(config: Config, tmp_path: Path) -> None:
    # Given a page on the database backend and a site with a file
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "a.example.toml").write_text("enabled = true\n")
    app = make_app(config)
    headers, csrf = login(app)
    assert 'action="/sites/remove"' in app.handle("GET", "/sites", headers).body.decode()

    # When it is removed from the page, Then the command is a row of the control table and the
    # removal is the shared store's; adding it back ends the removal
    post(app, "/sites/remove", headers, csrf=csrf, site="a.example")
    runtime = Runtime(config)
    with runtime.queue_manager() as qm:
        channel = DBControlChannel(qm.db, since=0)  # type: ignore[attr-defined]
        assert [body for _, body in channel.take()] == [b"remove-site a.example"]
        channel.close()
    store = runtime.removal_store()
    assert set(store.list()) == {"a.example"}
    post(app, "/sites/add", headers, csrf=csrf, site="a.example")
    assert store.list() == {}

    # And a removal made elsewhere (statusq control) shows on the page: it is the store's
    store.remove("b.example")
    store.close()
    assert "<td>b.example</td><td>removed (remove-site at " in app.handle("GET", "/sites", headers).body.decode()


def test_the_overview_degrades_without_metrics(config: Config) -> None:
    app = make_app(config)
    headers, _ = login(app)
    page = app.handle("GET", "/", headers).body.decode()
    assert "no running daemon found" in page
    assert "metrics unavailable" in page and "<svg" in page
    assert COOKIE not in page


def test_a_site_removed_from_the_page_is_shown_removed_until_added_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a page on STOMP (the control channel faked: what is sent is recorded) and sites with files
    config = Config.model_validate(
        {
            "var_dir": str(tmp_path / "var"),
            "queue": {"subsystem": "stomp", "stomp": {"control_channel": "/topic/control"}},
            "sites": {"dir": str(tmp_path / "sites"), "require_file": True},
            "metrics": {"enabled": False},
            "web": {"enabled": True, "token": TOKEN},
        }
    )
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "a.example.toml").write_text("enabled = true\n")
    (tmp_path / "sites" / "b.example.toml").write_text("enabled = true\n")
    sent: list[str] = []
    monkeypatch.setattr("statusq.web.sources.send_control", lambda _open, _config, text: sent.append(text))
    monkeypatch.setattr("statusq.web.sources.backlog", lambda _open, _config: [])
    app = make_app(config)
    headers, csrf = login(app)

    def status(site: str) -> str:
        page = app.handle("GET", "/sites", headers).body.decode()
        found = re.search(rf"<td>{re.escape(site)}</td><td>([^<]*)</td>", page)
        assert found is not None, page
        return found.group(1)

    assert status("a.example") == "served"
    # When a.example is removed, Then the page says so (its file is still there) and b.example is untouched
    post(app, "/sites/remove", headers, csrf=csrf, site="a.example")
    assert status("a.example").startswith("removed (remove-site sent from this page at ")
    assert status("b.example") == "served"
    # When it is added again, Then it is served again
    post(app, "/sites/add", headers, csrf=csrf, site="a.example")
    assert status("a.example") == "served"
    # And adding a site with no file here is sent, with a warning that it changes nothing
    post(app, "/sites/add", headers, csrf=csrf, site="c.example")
    page = app.handle("GET", "/sites", headers).body.decode()
    assert "update-site c.example (but there is no" in page and "its items stay refused" in page
    assert sent == ["remove-site a.example", "update-site a.example", "update-site c.example"]


def queued(config: Config) -> list[str]:
    with Runtime(config).queue_manager() as qm:
        rows = qm.backlog() or []
        return [f"{r.site}/{r.transport}:{r.ready}" for r in rows if r.ready]


def test_the_sites_page_purges_a_sites_backlog_and_cancels_an_item_with_csrf(config: Config) -> None:
    with Runtime(config).queue_manager() as qm:
        doomed = [qm.enqueue({}, "count", site="old.example") for _ in range(3)]
        keep = qm.enqueue({}, "count", site="keep.example")
        cancel = qm.enqueue({}, "count", site="keep.example")
    app = make_app(config)
    headers, csrf = login(app)
    page = app.handle("GET", "/sites", headers).body.decode()
    assert 'action="/sites/purge"' in page and 'action="/sites/cancel"' in page
    # Without the CSRF token: refused, nothing changes
    assert post(app, "/sites/purge", headers, site="old.example").status == 403
    assert post(app, "/sites/cancel", headers, id=cancel, csrf="forged").status == 403
    assert sorted(queued(config)) == ["keep.example/count:2", "old.example/count:3"]
    # With it: done, and the page says what was done
    assert post(app, "/sites/purge", headers, site="old.example", transport="", csrf=csrf).status == 303
    assert post(app, "/sites/cancel", headers, id=cancel, csrf=csrf).status == 303
    assert queued(config) == ["keep.example/count:1"]
    page = app.handle("GET", "/sites", headers).body.decode()
    assert "purged 3 queued item(s) of old.example" in page
    assert f"cancelled item {cancel}: deleted from the queue" in page
    assert doomed and keep
    # A bad field is reported and nothing is done
    assert post(app, "/sites/purge", headers, site="bad site!", csrf=csrf).status == 303
    assert "is not a site name" in app.handle("GET", "/sites", headers).body.decode()
