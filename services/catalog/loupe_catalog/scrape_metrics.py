"""The catalog's figures measured when `/metrics` is scraped (see `kit/scrape.py`): the
outbox's backlog, the results ingest consumer's backlog, and the image store's bytes and
objects by kind. Each replica reports the same shared figures; rules take their `max`."""

from fastapi import Request
from prometheus_client import CollectorRegistry, Gauge

from loupe_catalog.image_records import service as image_records
from loupe_catalog.outbox import repository as outbox
from loupe_catalog.results.ingest import DURABLE
from loupe_catalog.settings import CatalogSettings
from loupe_catalog.state import catalog_state
from loupe_shared.contracts import subjects
from loupe_shared.kit.scrape import Scrape, at_most_every


def install(registry: CollectorRegistry, settings: CatalogSettings) -> None:
    outbox_pending = Gauge(
        "outbox_pending_events", "Outbox rows not relayed to NATS yet", registry=registry
    )
    outbox_oldest = Gauge(
        "outbox_oldest_pending_age_seconds",
        "Age of the oldest outbox row not relayed yet (0 when none is pending)",
        registry=registry,
    )
    ingest_pending = Gauge(
        "results_ingest_pending_messages",
        "Messages on the results stream not yet delivered to the ingest consumer (its num_pending)",
        registry=registry,
    )
    ingest_unacked = Gauge(
        "results_ingest_unacknowledged_messages",
        "Messages delivered to the ingest consumer and not acknowledged yet (num_ack_pending)",
        registry=registry,
    )
    stored_bytes = Gauge(
        "images_stored_bytes",
        "Bytes in the image store by kind (master, capture, overlay, thumbnail), counted "
        "from the image records",
        ["kind"],
        registry=registry,
    )
    stored_objects = Gauge(
        "images_stored_objects",
        "Objects in the image store by kind, counted from the image records",
        ["kind"],
        registry=registry,
    )

    async def measure_outbox(request: Request) -> None:
        async with catalog_state(request).engine.connect() as conn:
            count, age = await outbox.backlog(conn)
        outbox_pending.set(count)
        outbox_oldest.set(age)

    async def measure_ingest(request: Request) -> None:
        info = await catalog_state(request).js.consumer_info(
            subjects.stream_name("RESULTS", settings.namespace), DURABLE, timeout=2
        )
        ingest_pending.set(info.num_pending or 0)
        ingest_unacked.set(info.num_ack_pending or 0)

    async def measure_storage(request: Request) -> None:
        async with catalog_state(request).sessions() as session:
            usage = await image_records.usage(session)
        for kind, counted in usage.kinds.items():
            stored_bytes.labels(kind).set(counted.bytes)
            stored_objects.labels(kind).set(counted.objects)

    scrape = Scrape.of(registry)
    scrape.add("outbox", measure_outbox)
    # The consumer is created by whichever ingester starts first (here or in `python -m
    # loupe_catalog ingest`), so every replica can ask for it.
    scrape.add("results_ingest", measure_ingest)
    # A grouped count over every image record: paid at most once per interval.
    scrape.add("storage", at_most_every(settings.storage_metrics_interval_s, measure_storage))
