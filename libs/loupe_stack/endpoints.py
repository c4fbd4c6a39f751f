"""Where the servers are, and the environment each Loupe service gets from that."""

from dataclasses import dataclass

import asyncpg
from minio import Minio

from loupe_shared.kit.settings import NatsSettings


@dataclass(frozen=True)
class Endpoints:
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_database: str
    nats_url: str
    nats_user: str
    nats_password: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str

    def service_env(
        self,
        service: str,
        *,
        port: int,
        images_bucket: str,
        backup_bucket: str,
        namespace: str = "",
        log_level: str = "info",
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        prefix = service.upper() + "_"
        values = {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": log_level,
            "NATS_URL": self.nats_url,
            "NATS_USER": self.nats_user,
            "NATS_PASSWORD": self.nats_password,
            "NAMESPACE": namespace,
            "DB_HOST": self.pg_host,
            "DB_PORT": str(self.pg_port),
            "DB_USER": self.pg_user,
            "DB_PASSWORD": self.pg_password,
            "DB_NAME": self.pg_database,
            "S3_ENDPOINT": self.s3_endpoint,
            "S3_ACCESS_KEY": self.s3_access_key,
            "S3_SECRET_KEY": self.s3_secret_key,
            "IMAGES_BUCKET": images_bucket,
            "BACKUP_BUCKET": backup_bucket,
            **(extra or {}),
        }
        return {prefix + key: value for key, value in values.items()}

    def s3(self) -> Minio:
        """A client of the S3 server."""
        return Minio(
            self.s3_endpoint,
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
            secure=False,
        )

    def nats(self, namespace: str = "") -> NatsSettings:
        """Settings that reach the NATS server, in `namespace`."""
        return NatsSettings(
            nats_url=self.nats_url,
            nats_user=self.nats_user,
            nats_password=self.nats_password,
            namespace=namespace,
        )

    async def pg_connect(
        self, database: str | None = None, timeout_s: float = 60
    ) -> asyncpg.Connection:
        """A connection to PostgreSQL, to `database` (the installation's by default)."""
        conn: asyncpg.Connection = await asyncpg.connect(
            host=self.pg_host,
            port=self.pg_port,
            user=self.pg_user,
            password=self.pg_password,
            database=database or self.pg_database,
            timeout=timeout_s,
        )
        return conn
