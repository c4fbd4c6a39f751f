"""The line client's settings, read from `LOUPE_LINE_*` environment variables."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from loupe_shared.contracts.results import LINE_ID, MAX_BATCH


class LineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOUPE_LINE_", extra="ignore", frozen=True)

    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str = ""
    nats_password: SecretStr = SecretStr("")
    # Prefix for subjects and streams; production runs with the empty namespace.
    namespace: str = ""
    line_id: str = Field(default="line-1", pattern=LINE_ID)
    # SQLite file holding what could not be delivered yet; it survives restarts.
    spool_path: Path = Path("loupe-line-spool.sqlite3")

    # Messages (batches) awaiting a JetStream ack at once.
    max_in_flight: int = Field(default=64, ge=1)
    # Results per message, and bytes per message (keep below the server's max_payload).
    batch_max: int = Field(default=250, ge=1, le=MAX_BATCH)
    batch_max_bytes: int = Field(default=1_000_000, ge=4096)
    # How long the first result of a batch waits for company.
    linger_ms: float = Field(default=5.0, ge=0)
    # A message not acknowledged within this many seconds is spooled.
    publish_timeout_s: float = Field(default=5.0, gt=0)

    # Replay retries: exponential backoff with full jitter between these bounds.
    retry_base_s: float = Field(default=0.1, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    # The breaker opens after this many consecutive failures; its cooldown doubles on every
    # failed probe, up to the maximum.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=1.0, gt=0)
    breaker_cooldown_max_s: float = Field(default=30.0, gt=0)

    # start() waits this long for the first connection, then carries on spooling.
    connect_timeout_s: float = Field(default=2.0, gt=0)
    reconnect_wait_s: float = Field(default=0.5, ge=0)
    # A silently dead link is noticed after two or three ping intervals.
    ping_interval_s: int = Field(default=10, ge=1)
    # Bytes the NATS client may hold for a connection that is being re-established.
    pending_bytes: int = Field(default=4 * 1024 * 1024, ge=0)

    @property
    def max_pending_results(self) -> int:
        """Results accepted but not yet durable before submit() makes the caller wait."""
        return 2 * self.max_in_flight * self.batch_max
