"""Test-only: one worker serving the given groups with the XMPP managers wired in, as
``statusq daemon --group xmpp --workers 1`` runs once ``statusq.worker.build_worker`` adds
``statusq.xmpp.xmpp_managers``.  The e2e tests use the real daemon as soon as it does.

    python -m tests.e2e.xmpp_worker --config PATH --group xmpp [--group main ...]
"""

from __future__ import annotations

import argparse
import logging
import sys

from statusq.errors import StatusqError
from statusq.logs import TEXT_FORMAT as LOG_FORMAT
from statusq.runtime import Runtime
from statusq.worker import build_master, check_groups
from statusq.xmpp import xmpp_managers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--group", dest="groups", action="append", required=True)
    args = parser.parse_args(argv)
    runtime = Runtime.from_path(args.config)
    logging.basicConfig(level=runtime.config.log.level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    groups = set(args.groups)
    try:
        check_groups(runtime, groups)
        extra = xmpp_managers(runtime.config, runtime.sites, runtime.registry, runtime.queue_manager(), groups)
        master = build_master(runtime, groups=groups, extra_managers=extra)
    except StatusqError as exc:
        logging.getLogger("statusq.worker").error("cannot start: %s", exc)
        return exc.exit_code
    master.install_signal_handlers()
    return master.run()


if __name__ == "__main__":
    sys.exit(main())
