"""Settings building blocks. Each service composes one `pydantic-settings` class from these
mixins with its own env prefix (`CATALOG_`, `IMAGES_`, ...) and instantiates it once."""

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

# The bounds of a lease's TTL (kit.lease).
MIN_TTL_S = 1.0
MAX_TTL_S = 600.0


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # Seconds a draining server waits for in-flight requests on shutdown.
    shutdown_timeout_s: float = 10.0
    # A request body must keep coming: a pause longer than this between two of its chunks,
    # or a whole body taking longer than `body_timeout_s`, is answered 408.
    body_idle_timeout_s: float = 30.0
    body_timeout_s: float = 600.0
    # The longest an instance goes without reading the restore's maintenance notice (it reads
    # it at once when the notice is written; this is the fallback when that is not heard).
    maintenance_poll_s: float = Field(default=0.2, gt=0, le=60)
    # Fault injection for the idempotency test: exit after a keyed request's work is done and
    # before its answer is kept (the worst moment to die).
    idempotency_crash_before_keep: bool = False


class DatabaseSettings(BaseSettings):
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_user: str = "loupe"
    db_password: SecretStr = SecretStr("")
    db_name: str = "loupe"
    db_pool_size: int = 10

    def database_url(self) -> URL:
        return URL.create(
            "postgresql+asyncpg",
            username=self.db_user,
            password=self.db_password.get_secret_value() or None,
            host=self.db_host,
            port=self.db_port,
            database=self.db_name,
        )


class NatsSettings(BaseSettings):
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str = ""
    nats_password: SecretStr = SecretStr("")
    # Prefix for subjects, streams and buckets; tests use it to isolate their data.
    namespace: str = ""
    # A revoked token stops working on this service within this many seconds.
    token_cache_ttl_s: float = 2.0


class S3Settings(BaseSettings):
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_secure: bool = False
    s3_region: str = "us-east-1"


class LeaseSettings(BaseSettings):
    """Leases of the work one replica runs at a time (see kit.lease): a dead holder's work is
    taken over after about `lease_ttl_s`; a holder renews every `lease_renew_s` (0: a third
    of the TTL)."""

    lease_ttl_s: float = Field(default=15.0, ge=MIN_TTL_S, le=MAX_TTL_S)
    lease_renew_s: float = Field(default=0.0, ge=0.0, le=MAX_TTL_S / 2)

    @model_validator(mode="after")
    def _renewed_in_time(self) -> Self:
        if self.lease_renew_s > self.lease_ttl_s / 2:
            raise ValueError("lease_renew_s is at most half of lease_ttl_s")
        return self

    def lease_renew_every_s(self) -> float:
        return self.lease_renew_s or self.lease_ttl_s / 3
