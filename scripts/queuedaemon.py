#!/usr/bin/env python3
"""StatusNet's name for the daemon: ``queuedaemon.py [--config PATH] ARGS`` is
``statusq [--config PATH] daemon ARGS``."""

import sys

from statusq.cli.main import main


def _argv(args: list[str]) -> list[str]:
    front: list[str] = []
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--config":
            front += [arg, next(it, "")]
        elif arg.startswith("--config="):
            front.append(arg)
        else:
            rest.append(arg)
    return [*front, "daemon", *rest]


if __name__ == "__main__":
    sys.exit(main(_argv(sys.argv[1:])))
