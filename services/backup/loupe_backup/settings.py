from pydantic_settings import SettingsConfigDict

from loupe_shared.kit.settings import DatabaseSettings, NatsSettings, S3Settings, ServiceSettings


class BackupSettings(ServiceSettings, DatabaseSettings, S3Settings, NatsSettings):
    model_config = SettingsConfigDict(env_prefix="BACKUP_", extra="ignore", frozen=True)

    port: int = 8103
    images_bucket: str = "loupe-images"
    backup_bucket: str = "loupe-backups"
