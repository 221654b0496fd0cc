"""``python -m statusq.cli.specs [CONFIG]``: the plugins' queue declarations as JSON, for the web page.

The supervisor that serves the page imports no plugin, so its :class:`~statusq.web.queues.SpecCache`
runs this in a short-lived child process, which loads the plugins as a worker would.
"""

from __future__ import annotations

import sys

from statusq.errors import StatusqError
from statusq.runtime import Runtime
from statusq.web.queues import specs_to_json


def main(argv: list[str]) -> int:
    """Print the plugins' queue declarations as JSON; exit 78 (and the error on stderr) if they
    cannot be loaded."""
    try:
        runtime = Runtime.from_path(argv[0] if argv else None)
        print(specs_to_json(list(runtime.registry.queues)))
    except StatusqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 78
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
