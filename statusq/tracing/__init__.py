"""OpenTelemetry tracing (the optional extra ``statusq[otel]``): see :mod:`.middleware` for the
spans, :mod:`.setup` for what a config turns on.  Importing this package imports no OpenTelemetry."""
