"""The one metrics model of a daemon and its exporters; ``docs/metrics.md`` names every series."""
