"""The demo plugin: shows work flowing in ``make run``.

Transport ``demo``: greets with the site's own greeting (from ``conf/sites/<site>.toml``), so
you can see one worker switching sites item by item.  An item with ``"flaky": true`` fails on
its first attempt, to show a retry; ``"fail": true`` always fails, to show a dead letter.
"""

from __future__ import annotations

import logging

from statusq import PluginApi, QueueHandler, QueueItem, current_site

log = logging.getLogger("statusq.plugin.demo")


class DemoHandler(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        payload = item.payload if isinstance(item.payload, dict) else {"text": str(item.payload)}
        if payload.get("fail"):
            raise RuntimeError("this item always fails (demo of dead-lettering)")
        if payload.get("flaky") and item.attempt == 1:
            return False  # retried after the backoff; attempt 2 succeeds
        greeting = current_site().settings.get("demo", {}).get("greeting", "Hello")
        text = payload.get("text", "")
        log.info("[%s] %s! %r reversed is %r (attempt %d)", item.site, greeting, text, text[::-1], item.attempt)
        return True


def register(api: PluginApi) -> None:
    api.register_handler("demo", DemoHandler)
