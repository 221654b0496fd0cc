"""Reading ``/metrics`` from outside the daemon: the SNMP agent, the nagios check and gmetric.

They read the Prometheus endpoint rather than the daemon's files so that there is one model and
one place that assembles it (the supervisor); what a reader sees is exactly what Prometheus sees.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from statusq.errors import StatusqError


class ScrapeError(StatusqError):
    """The endpoint could not be reached or did not answer with metrics."""


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


class Samples:
    """The samples of one scrape, looked up by name and a subset of labels."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    @classmethod
    def parse(cls, text: str) -> Samples:
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as exc:
            raise ScrapeError(f"not Prometheus text format: {exc}") from exc
        return cls([Sample(s.name, dict(s.labels), float(s.value)) for f in families for s in f.samples])

    def select(self, name: str, **labels: str) -> Iterator[Sample]:
        for sample in self.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                yield sample

    def sum(self, name: str, **labels: str) -> float:
        """The total over every series of ``name`` matching ``labels`` (0 when there is none)."""
        return sum(sample.value for sample in self.select(name, **labels))

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the one series matching, or None when absent."""
        found = list(self.select(name, **labels))
        return sum(s.value for s in found) if found else None

    def label_values(self, name: str, label: str) -> list[str]:
        return sorted({s.labels[label] for s in self.select(name) if label in s.labels})


def fetch(url: str, timeout: float = 5.0) -> Samples:
    """Scrape ``url``; a daemon that is down or answers garbage is a :class:`ScrapeError`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeError(f"cannot read {url}: {reason}") from exc
    return Samples.parse(text)
