"""The interface for reporting failed items to an error tracker, with the item's context."""

from __future__ import annotations

from statusq.item import Delivery
from statusq.middleware import Middleware
from statusq.outcome import Outcome, Result


class ErrorReporter(Middleware):
    """Calls :meth:`report` once per item that ends in the dead-letter queue, and, with
    ``report_retries``, once per failed attempt before that too.  By default only the final
    failure: a remote server down for an hour retries every push to it, and a tracker that gets
    an event per attempt drowns the one that matters.  Subclass it and override :meth:`report`;
    add it from a plugin with ``api.add_middleware``."""

    def __init__(self, *, report_retries: bool = False) -> None:
        self.report_retries = report_retries

    def after_item(self, delivery: Delivery, result: Result) -> None:
        if result.outcome is Outcome.DEAD or (self.report_retries and result.outcome is Outcome.RETRY):
            self.report(delivery, result)

    def report(self, delivery: Delivery, result: Result) -> None:
        """Send one failure: ``result.error`` is what the handler raised (None when it returned
        False, or when the item failed before its handler ran), ``result.reason`` says why."""
