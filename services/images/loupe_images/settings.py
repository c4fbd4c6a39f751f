from pydantic import Field
from pydantic_settings import SettingsConfigDict

from loupe_shared.kit.settings import LeaseSettings, NatsSettings, S3Settings, ServiceSettings

# A century: any longer grace period keeps everything, and one much longer overflows the
# date arithmetic of the cut-off.
MAX_GC_GRACE_S = 100 * 365.25 * 24 * 3600


class ImagesSettings(ServiceSettings, S3Settings, NatsSettings, LeaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGES_", extra="ignore", frozen=True)

    port: int = 8102
    images_bucket: str = "loupe-images"
    max_upload_bytes: int = 64 * 1024 * 1024
    # Larger images are refused from their header, before any decoding.
    max_pixels: int = 100_000_000
    # Uploads are held in memory up to this size, on disk beyond it.
    spool_bytes: int = 8 * 1024 * 1024
    # A thumbnail job taking longer than this is given up (the status tells why).
    thumbnail_timeout_s: float = 20.0
    thumbnail_workers: int = 2
    # An upload of more pixels than this is answered once the blob and its small thumbnail
    # are stored; the large thumbnail (its WebP encoding the costliest step) follows.
    large_thumbnail_later_pixels: int = Field(default=4_000_000, ge=0)
    # Served thumbnails kept in memory (and served while the object store is down).
    thumbnail_cache_bytes: int = 64 * 1024 * 1024
    thumbnail_cache_ttl_s: float = 300.0
    # Garbage collection: unreferenced blobs older than the grace period, every interval
    # (0 turns the background collection off; `POST /api/images/gc` still runs one). The
    # scrub and the collection each run on one replica at a time (`IMAGES_LEASE_TTL_S`).
    gc_grace_s: float = Field(default=24 * 3600.0, ge=0, le=MAX_GC_GRACE_S)
    gc_interval_s: float = 3600.0
    # How long to wait for the catalog's answer about an image's references.
    claim_timeout_s: float = 10.0
    # Integrity scrub: a full pass every interval (0: only on request), in batches of
    # `scrub_batch_s` of work separated by `scrub_pause_s`.
    scrub_interval_s: float = 24 * 3600.0
    scrub_batch_s: float = 2.0
    scrub_pause_s: float = 0.5
    # The object store's capacity for `images_store_capacity_bytes` (see capacity.py): the
    # SeaweedFS master's HTTP address, or else a quota in bytes (0: not known).
    store_admin_url: str = ""
    store_quota_bytes: int = Field(default=0, ge=0)
