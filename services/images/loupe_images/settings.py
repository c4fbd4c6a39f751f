from pydantic_settings import SettingsConfigDict

from loupe_shared.kit.settings import NatsSettings, S3Settings, ServiceSettings


class ImagesSettings(ServiceSettings, S3Settings, NatsSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGES_", extra="ignore", frozen=True)

    port: int = 8102
    images_bucket: str = "loupe-images"
