from pydantic_settings import SettingsConfigDict

from loupe_shared.kit.settings import DatabaseSettings, NatsSettings, ServiceSettings


class CatalogSettings(ServiceSettings, DatabaseSettings, NatsSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", frozen=True)

    port: int = 8101
    images_url: str = "http://127.0.0.1:8102"
