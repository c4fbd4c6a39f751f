"""Reading a service's `/metrics` the way Prometheus does."""

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from loupe_stack.stack import Stack
from tests.conftest import auth

# What each family exports under its own name when it has no sample yet.
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


def scrape(platform: Stack, service: str, token: str) -> str:
    return scrape_url(platform.service_url(service), token)


def scrape_url(url: str, token: str) -> str:
    """The `/metrics` of the process at `url`."""
    answer = httpx.get(f"{url}/metrics", headers=auth(token), timeout=30)
    assert answer.status_code == 200, f"{url}: /metrics answered {answer.status_code}"
    return answer.text


def metric(url: str, token: str, name: str, **labels: str) -> float:
    """`value` of the process at `url` now; 0 for a series without a sample yet."""
    return value(scrape_url(url, token), name, **labels) or 0.0


def exported(text: str) -> set[str]:
    """Every series name the exposition offers, also of families without samples."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def samples(text: str, name: str) -> list[Sample]:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample of `name` whose labels include `labels`, or None."""
    for sample in samples(text, name):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None
