"""Handler failures to Sentry (the optional extra ``statusq[sentry]``), from ``[sentry] dsn``."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime

from statusq.config import Config
from statusq.errors import ConfigError
from statusq.item import Delivery
from statusq.middleware import Middleware
from statusq.outcome import Result
from statusq.reporting.base import ErrorReporter


def check(config: Config) -> None:
    if config.sentry.dsn and importlib.util.find_spec("sentry_sdk") is None:
        raise ConfigError("[sentry] dsn is set but sentry-sdk is not installed: pip install 'statusq[sentry]'")


def worker_middleware(config: Config) -> list[Middleware]:
    """The reporter of a worker, after its fork (the SDK's sending thread is per process)."""
    if not config.sentry.dsn:
        return []
    check(config)
    import sentry_sdk  # noqa: PLC0415 - optional extra

    sentry_sdk.init(
        dsn=config.sentry.dsn,
        environment=config.sentry.environment,
        # No logging integration: every dead letter is also logged at ERROR, and each would
        # become a second event; no other integration either, the reporter says what happened.
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    return [SentryReporter(report_retries=config.sentry.report_retries)]


class SentryReporter(ErrorReporter):
    """One Sentry event per failure, tagged with site, transport, outcome and failure kind (so
    Sentry groups and filters by them), the item's fields as the ``statusq item`` context."""

    def report(self, delivery: Delivery, result: Result) -> None:
        import sentry_sdk  # noqa: PLC0415 - optional extra (imported once, by worker_middleware)

        with sentry_sdk.new_scope() as scope:
            scope.set_tag("statusq.site", delivery.site)
            scope.set_tag("statusq.transport", delivery.transport)
            scope.set_tag("statusq.outcome", result.outcome.value)
            if result.kind is not None:
                scope.set_tag("statusq.failure", result.kind.value)
            scope.set_context(
                "statusq item",
                {
                    "id": delivery.id,
                    "site": delivery.site,
                    "transport": delivery.transport,
                    "attempt": delivery.attempt,
                    "reason": result.reason,
                    "enqueued_at": datetime.fromtimestamp(delivery.enqueued_at, UTC).isoformat(),
                },
            )
            if result.error is not None:
                sentry_sdk.capture_exception(result.error)
            else:
                sentry_sdk.capture_message(f"{delivery.transport} item failed: {result.reason}", level="error")

    def before_worker_shutdown(self) -> None:
        import sentry_sdk  # noqa: PLC0415 - optional extra

        sentry_sdk.flush(timeout=2.0)
