"""Reporting handler failures with the item's context: :class:`.base.ErrorReporter`, and Sentry
(the optional extra ``statusq[sentry]``) in :mod:`.sentry`."""
