"""Settings of the embedded stack (env prefix `LOUPE_`)."""

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("catalog", "images", "backup", "inspect")
# Processes of each HTTP service and result ingesters in cluster mode.
CLUSTER_REPLICAS = 2
# The port settings of the result ingesters' metrics, `ingester_metrics_port[_n]`.
INGESTER_METRICS = "ingester_metrics"
# Nodes of the NATS cluster in cluster mode (every data stream at this many replicas).
CLUSTER_NATS_NODES = 3
# A TCP port a server of the stack listens on.
Port = Annotated[int, Field(ge=1, le=65535)]

# The console's built files in a checkout (`python -m loupe_stack.console` builds them).
CONSOLE_DIST = Path(__file__).resolve().parents[2] / "console" / "dist"


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOUPE_", extra="ignore")

    data_dir: Path = Path("data")
    gateway_port: Port = 8080
    pg_port: Port = 5433
    nats_port: Port = 4222
    nats_monitor_port: Port = 8222
    s3_port: Port = 8333
    weed_master_port: Port = 9333
    weed_volume_port: Port = 9340
    weed_filer_port: Port = 8888
    catalog_port: Port = 8101
    images_port: Port = 8102
    backup_port: Port = 8103
    inspect_port: Port = 8104
    # Cluster mode (`loupe run --cluster`): three NATS nodes, two processes of each service
    # behind the gateway, two result ingesters, two SeaweedFS volume servers.
    cluster: bool = False
    nats_port_2: Port = 4223
    nats_port_3: Port = 4224
    nats_monitor_port_2: Port = 8223
    nats_monitor_port_3: Port = 8224
    nats_route_port: Port = 6222
    nats_route_port_2: Port = 6223
    nats_route_port_3: Port = 6224
    weed_volume_port_2: Port = 9341
    catalog_port_2: Port = 8111
    images_port_2: Port = 8112
    backup_port_2: Port = 8113
    inspect_port_2: Port = 8114
    # Where each result ingester serves its metrics (cluster mode).
    ingester_metrics_port: Port = 8121
    ingester_metrics_port_2: Port = 8122
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
        if self.cluster:
            entries.append(
                (self.weed_volume_port_2, "SeaweedFS volume 2", "LOUPE_WEED_VOLUME_PORT_2")
            )
        for port, what, setting in list(entries[4:]):
            entries.append((port + 10000, f"{what} gRPC ({weed_grpc})", setting))
        if self.cluster:
            for name in ("nats_port", "nats_monitor_port"):
                for node in (2, 3):
                    setting = f"{name}_{node}"
                    entries.append(
                        (getattr(self, setting), f"NATS node {node}", f"LOUPE_{setting.upper()}")
                    )
            for setting in ("nats_route_port", "nats_route_port_2", "nats_route_port_3"):
                entries.append(
                    (getattr(self, setting), "NATS cluster routes", f"LOUPE_{setting.upper()}")
                )
            for node in range(1, CLUSTER_REPLICAS + 1):
                setting = self.port_setting(INGESTER_METRICS, node)
                entries.append(
                    (getattr(self, setting), f"ingester {node} metrics", f"LOUPE_{setting.upper()}")
                )
        for service in SERVICES:
            for replica in self.replicas(service):
                setting = self.port_setting(service, replica)
                entries.append(
                    (
                        getattr(self, setting),
                        f"{service} service" + (f" (replica {replica})" if replica > 1 else ""),
                        f"LOUPE_{setting.upper()}",
                    )
                )
        return entries

    def replicas(self, service: str) -> range:
        """The replica numbers of an HTTP service (1 and, in cluster mode, 2)."""
        return range(1, (CLUSTER_REPLICAS if self.cluster else 1) + 1)

    @staticmethod
    def port_setting(service: str, replica: int = 1) -> str:
        return f"{service}_port" + (f"_{replica}" if replica > 1 else "")

    def port_of(self, service: str, replica: int = 1) -> int:
        port: int = getattr(self, self.port_setting(service, replica))
        return port

    def nats_nodes(self) -> list[tuple[int, int, int]]:
        """(client port, monitoring port, route port) of each NATS node."""
        if not self.cluster:
            return [(self.nats_port, self.nats_monitor_port, self.nats_route_port)]
        return [
            (self.nats_port, self.nats_monitor_port, self.nats_route_port),
            (self.nats_port_2, self.nats_monitor_port_2, self.nats_route_port_2),
            (self.nats_port_3, self.nats_monitor_port_3, self.nats_route_port_3),
        ]
