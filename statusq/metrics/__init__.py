"""The one metrics model of a daemon and its exporters; ``docs/metrics.md`` names every series."""

#: The environment variable prometheus-client reads; the supervisor sets it for its workers.  Here,
#: not in ``model``: the supervisor needs the name without importing prometheus-client.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
