"""The IoManager contract: what the IoMaster's loop needs from each thing it drives."""

from __future__ import annotations

import math


class IoManager:
    """A source of work inside one process's loop (the queue listener, a timer, a connection).

    The master waits until one of :meth:`filenos` is readable or :meth:`timeout` has passed,
    then calls :meth:`poll`.  ``poll`` must return promptly: one item, one tick.  Defaults are
    no-ops so a subclass overrides only what it needs.
    """

    name = "manager"

    def start(self) -> None:
        """Connect, subscribe; called once before the loop."""

    def filenos(self) -> list[int]:
        return []

    def timeout(self) -> float:
        """Seconds until this manager wants :meth:`poll` even without I/O (inf: never)."""
        return math.inf

    def poll(self) -> bool:
        """Do one unit of work; True if anything was done (resets the idle clock)."""
        return False

    def more(self) -> bool:
        """After a :meth:`poll` that did work: is more due at once, and nothing this manager
        knows of that another one must see first?  The master then polls again straight away,
        for a few milliseconds, instead of asking every manager between every two units."""
        return False

    def busy(self) -> bool:
        """True while work is pending that --idle-exit must wait for."""
        return False

    def holding(self) -> bool:
        """True while items are in hand that must finish before the process may exit (a worker
        with several at once); the master keeps polling until none is left."""
        return False

    def wind_down(self) -> None:
        """The process is stopping: take no new work, finish what :meth:`holding` says is in hand."""

    def stop(self) -> None:
        """Release held work and disconnect; called once after the loop, even after errors."""
