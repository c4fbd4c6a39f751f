from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from loupe_shared.kit.settings import NatsSettings, S3Settings, ServiceSettings


class InspectSettings(ServiceSettings, S3Settings, NatsSettings):
    model_config = SettingsConfigDict(env_prefix="INSPECT_", extra="ignore", frozen=True)

    port: int = 8104
    images_bucket: str = "loupe-images"
    # Program revisions are read from the catalog's API with this token (role line or
    # viewer). Empty: the worker registers a line token of its own in the installation's
    # token store when it starts and revokes it when it stops.
    catalog_url: str = "http://127.0.0.1:8101"
    catalog_token: SecretStr = SecretStr("")
    catalog_timeout_s: float = 10.0
    # Overlay images (requests with `overlay: true`) are stored through the images service
    # with the same token.
    images_url: str = "http://127.0.0.1:8102"
    # The JetStream consumer every worker shares (one group: each request is handled once).
    durable: str = "inspect-workers"
    # Requests one process holds at once: loading one while another is inspected.
    concurrency: int = 2
    # Threads inspecting (OpenCV releases the GIL); 1 with one worker process per core.
    threads: int = 1
    # OpenCV's own threads per inspection; 1 scales best with one worker process per core.
    opencv_threads: int = 1
    # A request taking longer than this (loading, decoding and inspecting) gets an `error`
    # result.
    time_limit_s: float = 30.0
    # A request stays with the worker that fetched it for time_limit_s + ack_slack_s; past
    # that (the worker died) another worker gets it. Read when the consumer is created.
    ack_slack_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    # A request that failed for a passing reason (catalog or object store unreachable) is
    # delivered again after `retry_delay_s`, at most this many times, then dead-lettered.
    max_deliveries: int = 5
    retry_delay_s: float = 2.0
    # Decoded master images (with their reduced copies and ROI references) kept in memory.
    master_cache_bytes: int = 512 * 1024 * 1024
    revision_cache_size: int = 256
    # How long "the program's current revision" is taken as known.
    current_revision_ttl_s: float = 5.0
    # Alignment runs on a copy reduced to at most this many pixels.
    max_align_pixels: int = 400_000
    # Load the masters of active programs when the worker starts and when a program is
    # revised, so the first inspection does not pay for them.
    preload: bool = True
    # Names this worker in its results (default: host name and process id).
    worker_id: str = ""
