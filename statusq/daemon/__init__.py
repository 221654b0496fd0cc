"""The supervisor of ``statusq daemon``: worker processes, respawning, limits, signals, reloads.

:class:`~statusq.daemon.supervisor.QueueDaemon` is the entry point; see ``docs/architecture.md``
("Processes") for how its pieces fit.
"""

from __future__ import annotations

from statusq.daemon.supervisor import DaemonOptions, QueueDaemon

__all__ = ["DaemonOptions", "QueueDaemon"]
