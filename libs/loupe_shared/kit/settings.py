"""Settings building blocks. Each service composes one `pydantic-settings` class from these
mixins with its own env prefix (`CATALOG_`, `IMAGES_`, ...) and instantiates it once."""

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL


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
