"""Where the servers are, and the environment each Loupe service gets from that."""

from dataclasses import dataclass


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
