"""The web status page in a real headless Chromium, against a live ``statusq daemon``.

Driven as a person would: log in through the form, read the overview while the daemon works,
change a queue through the Aegir form, press Requeue, look at a hostile item body, add and remove
sites through the control channel (a daemon on ActiveMQ: the channel is STOMP's).  Debian's
chromium and chromium-driver are used with the driver's path named, so Selenium never tries to
download a driver (which cannot work here).  Without them the tests are skipped, or fail under
CI=true, where ``make test`` has installed them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.servers import IN_CI

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "web-test-token-0123456789"
SCRIPT_BODY = "<script>window.pwned = 1; alert('pwned')</script><img src=x onerror=\"window.pwned = 2\">"

#: A plugin beside the counter: a handler that fails while a gate file exists, and a periodic queue.
WEB_PLUGIN = """
import json, os
from statusq import QueueHandler

class Gate(QueueHandler):
    def handle(self, item):
        if os.path.exists(os.environ["WEB_GATE"]):
            return False
        fd = os.open(os.environ["TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps({"id": item.id, "gate": True}) + "\\n").encode())
        finally:
            os.close(fd)
        return True

def register(api):
    api.register_handler("gate", Gate)
    api.register_queue("cron", transport="count", frequency="1h", items=2)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--window-size=1280,1000",
    ):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Daemon:
    def __init__(self, config: Path, base: str, metrics: str, proc: subprocess.Popen[str], log: Path) -> None:
        self.config, self.base, self.metrics, self.proc, self.log = config, base, metrics, proc, log

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = run_cli(*args, config=self.config)
        assert done.returncode == 0, done.stderr
        return done

    def enqueue(self, transport: str, payload: Any, site: str = "example.org") -> str:
        """As an application enqueues (in this process: a CLI run per item would be slow here)."""
        import statusq

        with statusq.connect(self.config) as qm:
            return qm.enqueue(payload, transport, site=site)

    def queue(self, name: str) -> dict[str, Any]:
        views: list[dict[str, Any]] = json.loads(self.cli("queues", "--json").stdout)
        return next(v for v in views if v["name"] == name)

    def dead(self) -> list[dict[str, Any]]:
        letters: list[dict[str, Any]] = json.loads(self.cli("deadletters", "list", "--json").stdout)
        return letters


def web_toml(listen: str) -> str:
    return f'[web]\nenabled = true\nlisten = "{listen}"\ntoken = "{TOKEN}"\nsample_every = "0.5s"\n'


@contextmanager
def serving(config: Path, log: Path, web: str, metrics: str, *args: str) -> Iterator[Daemon]:
    """A daemon started on ``config``, yielded once its page answers, stopped afterwards."""
    proc = start_daemon(config, *args, log=log)
    base = f"http://{web}"
    try:
        wait_for(lambda: _answers(f"{base}/login") or proc.poll() is not None, 30, "the web page")
        assert proc.poll() is None, log.read_text()
        yield Daemon(config, base, f"http://{metrics}/metrics", proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def daemon(
    tmp_path: Path,
    plugin_dir: Path,
    record_file: Path,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Daemon]:
    """A daemon with two workers and the page on a free port; the gate closed (gate items fail)."""
    (plugin_dir / "webgate.py").write_text(WEB_PLUGIN)
    gate = tmp_path / "gate-closed"
    gate.touch()
    monkeypatch.setenv("WEB_GATE", str(gate))
    web, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    metrics_table = {"enabled": True, "listen": metrics}
    config = write_config(f"sqlite:///{tmp_path / 'queue.sqlite'}", web_toml(web), metrics=metrics_table)
    with serving(config, tmp_path / "daemon.log", web, metrics, "--workers", "2") as daemon:
        yield daemon


@pytest.fixture
def stomp_daemon(tmp_path: Path, record_file: Path, write_config: Callable[..., Path]) -> Iterator[Daemon]:
    """A daemon on the shared ActiveMQ (destinations of its own) serving only sites with a file
    (``[sites] require_file``): old.example has one from the start."""
    from tests.stomp import make_broker, stomp_toml

    broker = make_broker("activemq")
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "old.example.toml").write_text('[settings.counter]\ngreeting = "hello"\n')
    web, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    extra = stomp_toml(broker, control_secret="web-test-secret-0123") + "[sites]\nrequire_file = true\n" + web_toml(web)
    config = write_config(f"sqlite:///{tmp_path / 'dispatch.sqlite'}", extra, queue={"subsystem": "stomp"})
    log = tmp_path / "daemon.log"
    with serving(config, log, web, metrics, "--workers", "1") as daemon:
        # A control message reaches only the workers subscribed when it is sent.
        wait_for(lambda: "worker ready" in log.read_text(), 60, "the worker subscribed")
        yield daemon


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def log_in(driver: Any, daemon: Daemon) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{daemon.base}/")
    assert driver.current_url == f"{daemon.base}/login"  # reading needs the token here
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait_for(lambda: driver.current_url == f"{daemon.base}/", 10, "the overview after logging in")


def page_text(driver: Any, url: str) -> str:
    from selenium.webdriver.common.by import By

    driver.get(url)
    text: str = driver.find_element(By.TAG_NAME, "body").text
    return text


def test_the_overview_shows_the_daemon_at_work(browser: Any, daemon: Daemon) -> None:
    from selenium.webdriver.common.by import By

    # Given a daemon handling a steady trickle, one item that keeps a worker busy for a while
    log_in(browser, daemon)
    for n in range(20):
        daemon.enqueue("count", {"n": n}, site="other.example")
    daemon.enqueue("gate", {"n": 0}, site="other.example")  # dead-lettered: the gate is closed
    sleeper = daemon.enqueue("count", {"action": "sleep", "seconds": 8})
    # When the overview is loaded, Then it shows the supervisor, both workers and the busy one
    # (the sleeper, not one of the short items a worker may be seen busy with first)
    busy_with = f"count id={sleeper} site=example.org"
    wait_for(lambda: busy_with in page_text(browser, f"{daemon.base}/"), 20, "the busy worker on the overview")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "busy" in text
    assert f"daemon pid {daemon.proc.pid} (running" in text
    rows = browser.find_elements(By.CSS_SELECTOR, "main table")[0].find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 2
    assert f"count id={sleeper} site=example.org" in text
    # And the chart is drawn server-side, with no script anywhere
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert browser.find_elements(By.TAG_NAME, "script") == []
    if _answers(daemon.metrics):
        wait_for(
            lambda: page_text(browser, f"{daemon.base}/") and browser.find_elements(By.CSS_SELECTOR, "svg polyline"),
            30,
            "a rate line in the chart",
        )
    else:
        assert "metrics unavailable" in text
    # And the backlog table counts the dead letter by site and transport
    wait_for(lambda: "other.example gate 0 0 0 1" in page_text(browser, f"{daemon.base}/"), 30, "the dead letter")
    # And the cluster section lists this daemon, alive, from its heartbeat in the shared store
    wait_for(lambda: f" {daemon.proc.pid} alive " in page_text(browser, f"{daemon.base}/"), 30, "the cluster row")
    shot = os.environ.get("STATUSQ_WEB_SCREENSHOT")
    if shot:
        browser.get(f"{daemon.base}/")
        browser.save_screenshot(shot)


def test_a_queue_frequency_changed_in_the_form_is_what_statusq_queues_reports(browser: Any, daemon: Daemon) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    assert daemon.queue("cron")["frequency"] == 3600
    log_in(browser, daemon)
    browser.get(f"{daemon.base}/queues")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/queues/cron']")
    frequency = form.find_element(By.NAME, "frequency")
    assert frequency.get_attribute("value") == "1h"
    frequency.clear()
    frequency.send_keys("2m")
    form.find_element(By.NAME, "items").clear()
    form.find_element(By.NAME, "items").send_keys("4")
    Select(form.find_element(By.NAME, "enabled")).select_by_value("no")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(lambda: "cron: enabled False, frequency 2m, items 4" in browser.page_source, 10, "the saved message")
    view = daemon.queue("cron")
    assert (view["frequency"], view["items"], view["enabled"], view["status"]) == (120, 4, False, "disabled")
    assert "2m" in daemon.cli("queues").stdout.split("\n")[1]


def test_a_dead_letter_requeued_from_the_page_is_handled(
    browser: Any, daemon: Daemon, tmp_path: Path, record_file: Path
) -> None:
    from selenium.webdriver.common.by import By

    item = daemon.enqueue("gate", {"n": 1})
    wait_for(lambda: [d["id"] for d in daemon.dead()] == [item], 30, "the item to be dead-lettered")
    (tmp_path / "gate-closed").unlink()  # the handler works from now on
    log_in(browser, daemon)
    browser.get(f"{daemon.base}/deadletters")
    row = browser.find_element(By.XPATH, f"//tr[td[1][text()='{item}']]")
    assert "handler returned False" in row.text and "gate" in row.text
    row.find_element(By.CSS_SELECTOR, "form[action='/deadletters/requeue'] button").click()
    wait_for(lambda: "requeued 1 item(s)" in browser.page_source, 10, "the requeue message")
    wait_for(lambda: any(r.get("id") == item for r in read_records(record_file)), 30, "the requeued item handled")
    assert daemon.dead() == []
    assert "no dead letters" in page_text(browser, f"{daemon.base}/deadletters")


def test_a_script_in_an_item_body_is_shown_as_text_and_never_runs(browser: Any, daemon: Daemon) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    item = daemon.enqueue("gate", {"note": SCRIPT_BODY}, site="example.org")
    wait_for(lambda: [d["id"] for d in daemon.dead()] == [item], 30, "the item to be dead-lettered")
    log_in(browser, daemon)
    browser.get(f"{daemon.base}/deadletters")
    body = browser.find_element(By.XPATH, f"//tr[td[1][text()='{item}']]/td[7]")
    assert "<script>window.pwned = 1; alert('pwned')</script>" in body.text
    assert "<img src=x onerror=" in body.text
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    assert browser.execute_script("return window.pwned === undefined")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises


def test_a_post_without_the_csrf_token_is_refused(browser: Any, daemon: Daemon) -> None:
    log_in(browser, daemon)
    cookie = browser.get_cookie("statusq_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    request = urllib.request.Request(
        f"{daemon.base}/queues/cron",
        data=b"enabled=yes&frequency=1m&items=2",
        headers={"Cookie": f"statusq_session={cookie['value']}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert b"CSRF" in refused.value.read()
    assert daemon.queue("cron")["frequency"] == 3600
    assert _answers(f"{daemon.base}/login")


def test_sites_added_and_removed_from_the_page_are_served_and_refused(
    browser: Any, stomp_daemon: Daemon, tmp_path: Path, record_file: Path
) -> None:
    from selenium.webdriver.common.by import By

    daemon = stomp_daemon

    def site_row(name: str) -> Any:
        browser.get(f"{daemon.base}/sites")
        return browser.find_element(By.XPATH, f"//main//tr[td[1][text()='{name}']]")

    def dead_error(item: str) -> str | None:
        return next((d["error"] for d in daemon.dead() if d["id"] == item), None)

    # Given a daemon serving only sites with a file, old.example's from the start
    log_in(browser, daemon)
    assert site_row("old.example").text.startswith("old.example served yes")
    # And new.example's file written while it runs: not served yet, its items are refused
    (tmp_path / "sites" / "new.example.toml").write_text('[settings.counter]\ngreeting = "welcome"\n')
    early = daemon.enqueue("count", {"n": 0}, site="new.example")
    wait_for(lambda: dead_error(early) is not None, 30, "the item for the unknown site dead-lettered")
    assert "unknown site 'new.example'" in str(dead_error(early))

    # When new.example is added through the page's form
    browser.get(f"{daemon.base}/sites")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/sites/add']")
    form.find_element(By.NAME, "site").send_keys("new.example")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(lambda: "sent to every daemon: update-site new.example" in browser.page_source, 10, "the sent message")
    wait_for(lambda: "control: update-site new.example" in daemon.log.read_text(), 30, "the update applied")
    # Then its items are handled, with the settings from its file
    daemon.enqueue("count", {"n": 1}, site="new.example")
    wait_for(lambda: [r["n"] for r in read_records(record_file)] == [1], 30, "the item for the added site")
    assert read_records(record_file)[0]["greeting"] == "welcome"
    assert site_row("new.example").text.startswith("new.example served yes")

    # When it is removed with its row's button
    site_row("new.example").find_element(By.CSS_SELECTOR, "form[action='/sites/remove'] button").click()
    wait_for(lambda: "sent to every daemon: remove-site new.example" in browser.page_source, 10, "the sent message")
    wait_for(lambda: "control: remove-site new.example" in daemon.log.read_text(), 30, "the removal applied")
    # Then its items are dead letters, with that reason, shown on the page
    late = daemon.enqueue("count", {"n": 2}, site="new.example")
    wait_for(lambda: dead_error(late) is not None, 30, "the item for the removed site dead-lettered")
    assert "site 'new.example' was removed" in str(dead_error(late))
    browser.get(f"{daemon.base}/deadletters")
    assert "was removed" in browser.find_element(By.XPATH, f"//tr[td[1][text()='{late}']]").text
    assert [r["n"] for r in read_records(record_file)] == [1]
    # And old.example is still served
    daemon.enqueue("count", {"n": 3}, site="old.example")
    wait_for(lambda: [r["n"] for r in read_records(record_file)] == [1, 3], 30, "the item for old.example")
    assert read_records(record_file)[1]["greeting"] == "hello"
    # And the sites page no longer calls new.example served, while old.example still is
    assert site_row("new.example").text.startswith("new.example removed")
    assert site_row("old.example").text.startswith("old.example served yes")
