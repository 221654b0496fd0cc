"""The page's Pauses: list, pause and resume through POST forms with the CSRF token, stored where
``statusq pause`` stores them (the shared store at ``db_url``: a real SQLite file here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from statusq.config import Config
from statusq.runtime import Runtime
from tests.unit.test_web_app import HOST, TOKEN, login, make_app, make_config, post


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, token=TOKEN)


def paused(config: Config) -> list[tuple[str, str, str]]:
    with Runtime(config).queue_manager() as qm:
        return [(p.kind, p.name, p.reason) for p in qm.pauses()]


def test_a_site_is_paused_and_resumed_from_the_page(config: Config) -> None:
    app = make_app(config)
    headers, csrf = login(app)

    # A pause without the CSRF token changes nothing
    assert post(app, "/pauses/add", headers, kind="site", name="example.org").status == 403
    assert paused(config) == []

    # With it, the site is paused, and the page lists it with a Resume button
    assert (
        post(app, "/pauses/add", headers, kind="site", name="example.org", reason="moving <now>", csrf=csrf).status
        == 303
    )
    assert paused(config) == [("site", "example.org", "moving <now>")]
    page = app.handle("GET", "/pauses", headers).body.decode()
    assert "site example.org paused: moving &lt;now&gt;: every daemon holds" in page  # the flash message
    assert "example.org" in page and "moving &lt;now&gt;" in page and 'action="/pauses/resume"' in page

    # Resume lifts it
    assert post(app, "/pauses/resume", headers, kind="site", name="example.org", csrf=csrf).status == 303
    assert paused(config) == []
    assert "nothing paused" in app.handle("GET", "/pauses", headers).body.decode()


def test_a_bad_pause_form_is_reported_and_not_stored(config: Config) -> None:
    app = make_app(config)
    headers, csrf = login(app)
    post(app, "/pauses/add", headers, kind="queue", name="x", csrf=csrf)
    post(app, "/pauses/add", headers, kind="transport", name="Bad Name", csrf=csrf)
    page = app.handle("GET", "/pauses", headers).body.decode()
    assert "pause a site or a transport" in page and "is not a transport name" in page
    assert paused(config) == []


def test_the_pauses_page_is_read_only_without_a_login(tmp_path: Path) -> None:
    config = make_config(tmp_path, token=TOKEN, anonymous_read=True)
    with Runtime(config).queue_manager() as qm:
        qm.pause(transport="push", reason="remote down")
    page = make_app(config).handle("GET", "/pauses", HOST).body.decode()
    assert "push" in page and "remote down" in page and 'action="/pauses/' not in page
