"""Reading ``/metrics`` as Prometheus does: ``prometheus_client``'s own parser, so a test
fails on anything a scraper would choke on, and samples compare by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]


def samples(text: str) -> dict[Key, float]:
    """Every sample of an exposition text: (name, sorted labels) -> value."""
    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    """One sample's value, None when the text has no such sample."""
    return samples(text).get((name, tuple(sorted(labels.items()))))


def types(text: str) -> dict[str, str]:
    """Metric family name -> its type (counter, gauge, histogram...)."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}
