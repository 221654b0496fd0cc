#!/usr/bin/env python3
"""Feeds the demo: items for two sites, a few flaky ones, now and then one that always fails.

Used by ``make run``; stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import time

import statusq

WORDS = ["queue", "broker", "handler", "worker", "site", "daemon", "retry", "ack"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=None)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between items")
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: forever)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    qm = statusq.connect(args.config)
    sites = itertools.cycle(["example.org", "example.net"])
    try:
        for n in itertools.count(1):
            payload = {"text": f"{WORDS[n % len(WORDS)]} #{n}", "flaky": n % 7 == 0, "fail": n % 25 == 0}
            qm.enqueue(payload, "demo", site=next(sites))
            if args.count and n >= args.count:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        qm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
