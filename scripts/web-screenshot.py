#!/usr/bin/env python3
"""Save a screenshot of a running daemon's web status page (docs/web-overview.png, shown in docs/web.md).

Usage: scripts/web-screenshot.py URL TOKEN [OUTPUT] [PATH]

Logs in with TOKEN through the login form, opens PATH (default ``/``, the overview) and saves a
full-width PNG.  Uses Debian's chromium and chromium-driver (``make test`` installs them); the
driver's path is given so that Selenium never tries to download one.  ``tests/e2e/test_web.py``
takes the same screenshot against the daemon it drives.
"""

from __future__ import annotations

import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1100",
)


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ARGS:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def log_in(driver: webdriver.Chrome, base: str, token: str) -> None:
    driver.get(f"{base}/login")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()


def screenshot(driver: webdriver.Chrome, url: str, output: Path) -> None:
    driver.get(url)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(1100, min(int(height) + 160, 2400)))
    driver.get(url)  # laid out again at the new size
    output.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(output))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 64
    base, token = argv[0].rstrip("/"), argv[1]
    output = Path(argv[2]) if len(argv) > 2 else Path(__file__).resolve().parent.parent / "docs/web-overview.png"
    path = argv[3] if len(argv) > 3 else "/"
    driver = browser()
    try:
        log_in(driver, base, token)
        screenshot(driver, base + path, output)
    finally:
        driver.quit()
    print(f"saved {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
