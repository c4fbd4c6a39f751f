from pydantic import Field
from pydantic_settings import SettingsConfigDict

from loupe_shared.kit.settings import (
    DatabaseSettings,
    LeaseSettings,
    NatsSettings,
    ServiceSettings,
)


class CatalogSettings(ServiceSettings, DatabaseSettings, NatsSettings, LeaseSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", frozen=True)

    port: int = 8101
    images_url: str = "http://127.0.0.1:8102"
    # Seconds the outbox relay waits between polls when there is nothing to relay.
    outbox_idle_s: float = 0.25
    # Fault injection for tests only: the relay exits between publishing and marking.
    outbox_crash_after_publish: bool = False
    # Ingest results from the RESULTS stream in this process (`python -m loupe_catalog
    # ingest` runs ingesters on their own).
    ingest_enabled: bool = True
    ingest_fetch_messages: int = 100
    # `python -m loupe_catalog ingest` serves its Prometheus metrics (results ingested,
    # duplicates, dead letters, batch time) at http://HOST:PORT/metrics; 0: not served. The
    # API's /metrics needs a token; this one has none, so bind it where only Prometheus
    # reaches it.
    ingest_metrics_port: int = Field(default=0, ge=0, le=65535)
    # A reader waiting for new results (`GET /api/results?wait=`) is woken by the ingesters'
    # notices, and reads again this often besides (a notice is sent at most once).
    results_wait_recheck_s: float = Field(default=1.0, gt=0, le=60)
    # How often retention policies are applied (0: only on request); by one replica at a
    # time (`CATALOG_LEASE_TTL_S`).
    retention_interval_s: float = 3600.0
    # The image store's bytes and objects by kind (`images_stored_bytes{kind}`) are counted
    # from the image records at most this often, however often Prometheus scrapes.
    storage_metrics_interval_s: float = 60.0
    # Legacy migration (`POST /api/migrations/legacy`): the export's size (the gateway's
    # LOUPE_MAX_BODY_MIGRATIONS is the outer limit), programs per run, decoded bytes per
    # master image, and uploads to the images service at once.
    legacy_max_body_bytes: int = 128 * 1024 * 1024
    legacy_max_programs: int = 1000
    legacy_max_image_bytes: int = 16 * 1024 * 1024
    legacy_upload_concurrency: int = 4
