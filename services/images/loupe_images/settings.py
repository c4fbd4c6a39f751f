from pydantic_settings import SettingsConfigDict

from loupe_shared.kit.settings import NatsSettings, S3Settings, ServiceSettings


class ImagesSettings(ServiceSettings, S3Settings, NatsSettings):
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
