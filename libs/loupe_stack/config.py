"""Settings of the embedded stack (env prefix `LOUPE_`)."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("catalog", "images", "backup", "inspect")
# The console's built files in a checkout (`python -m loupe_stack.console` builds them).
CONSOLE_DIST = Path(__file__).resolve().parents[2] / "console" / "dist"


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOUPE_", extra="ignore")

    data_dir: Path = Path("data")
    gateway_port: int = 8080
    pg_port: int = 5433
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    s3_port: int = 8333
    weed_master_port: int = 9333
    weed_volume_port: int = 9340
    weed_filer_port: int = 8888
    catalog_port: int = 8101
    images_port: int = 8102
    backup_port: int = 8103
    inspect_port: int = 8104
    # Space-separated frontend origins the gateway answers CORS requests for.
    cors_origins: str = "http://localhost:5173 http://127.0.0.1:5173"
    images_bucket: str = "loupe-images"
    backup_bucket: str = "loupe-backups"
    log_level: str = "info"
    # How long the gateway waits for a whole request, body included (Caddy duration).
    gateway_read_timeout: str = "10m"
    # ... and the longest pause it accepts between two reads of a body.
    gateway_read_idle_timeout: str = "30s"
    # The folder the gateway serves at /console/ (the console's `npm run build` output).
    console_dir: Path = CONSOLE_DIST
    # Seconds each process gets to stop after its signal before it is killed.
    stop_timeout_s: float = 15.0
    start_timeout_s: float = 60.0

    def ports(self) -> list[tuple[int, str, str]]:
        """Every port the stack listens on: (port, what, the setting that moves it)."""
        weed_grpc = "SeaweedFS also listens at each of its ports + 10000"
        entries = [
            (self.gateway_port, "gateway", "LOUPE_GATEWAY_PORT"),
            (self.pg_port, "PostgreSQL", "LOUPE_PG_PORT"),
            (self.nats_port, "NATS", "LOUPE_NATS_PORT"),
            (self.nats_monitor_port, "NATS monitoring", "LOUPE_NATS_MONITOR_PORT"),
            (self.s3_port, "S3", "LOUPE_S3_PORT"),
            (self.weed_master_port, "SeaweedFS master", "LOUPE_WEED_MASTER_PORT"),
            (self.weed_volume_port, "SeaweedFS volume", "LOUPE_WEED_VOLUME_PORT"),
            (self.weed_filer_port, "SeaweedFS filer", "LOUPE_WEED_FILER_PORT"),
        ]
        for port, what, setting in list(entries[4:]):
            entries.append((port + 10000, f"{what} gRPC ({weed_grpc})", setting))
        for service in SERVICES:
            entries.append(
                (
                    getattr(self, f"{service}_port"),
                    f"{service} service",
                    f"LOUPE_{service.upper()}_PORT",
                )
            )
        return entries
