"""Start the whole platform in order, watch it, and stop it in reverse order."""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import urllib3
from minio import Minio

from loupe_stack import servers
from loupe_stack.bootstrap import SetupSettings, bootstrap
from loupe_stack.config import CLUSTER_REPLICAS, INGESTER_METRICS, SERVICES, StackSettings
from loupe_stack.credentials import Credentials, load_or_create
from loupe_stack.endpoints import Endpoints
from loupe_stack.processes import (
    ManagedProcess,
    StackError,
    http_ok,
    port_in_use,
    tcp_open,
    wait_until,
)

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


async def _create_database(endpoints: Endpoints) -> None:
    conn = await endpoints.pg_connect("postgres")
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", endpoints.pg_database
        )
        if not exists:
            await conn.execute(f'CREATE DATABASE "{endpoints.pg_database}"')
    finally:
        await conn.close()


def _pg_accepts(endpoints: Endpoints) -> bool:
    async def probe() -> bool:
        conn = await endpoints.pg_connect("postgres", timeout_s=2)
        await conn.close()
        return True

    return asyncio.run(probe())


def _s3_accepts(endpoints: Endpoints) -> bool:
    host, _, port = endpoints.s3_endpoint.rpartition(":")
    if not tcp_open(int(port), host):
        return False
    client = Minio(
        endpoints.s3_endpoint,
        access_key=endpoints.s3_access_key,
        secret_key=endpoints.s3_secret_key,
        secure=False,
        http_client=urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(2)),
    )
    client.list_buckets()
    return True


# SeaweedFS acknowledges an object once it is in its volume file, not once it is on disk. The
# design's first guarantee (a row never points at a missing blob: the blob is written first)
# holds through a power cut only if the object store syncs before it acknowledges, as
# PostgreSQL and JetStream (`sync_interval: always`) do: its path configuration asks for that
# on every bucket. (Kept in the filer's own store, so a warm start has it already.)
OBJECT_STORE_CONF = {"version": 0, "locations": [{"locationPrefix": "/buckets/", "fsync": True}]}


def _sync_object_writes(filer_port: int) -> None:
    answer = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(10)).request(
        "POST",
        f"http://127.0.0.1:{filer_port}/etc/seaweedfs/",
        fields={"file": ("filer.conf", json.dumps(OBJECT_STORE_CONF), "application/json")},
    )
    if answer.status not in (200, 201):
        raise StackError(f"the object store refused its configuration: {answer.status}")


class Stack:
    """The embedded stack. With `endpoints` given (testcontainers or external servers), only
    the gateway and the services are started."""

    def __init__(
        self,
        settings: StackSettings,
        *,
        endpoints: Endpoints | None = None,
        namespace: str = "",
        report: Report = _quiet,
        service_extra_env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.namespace = namespace
        self.report = report
        self.external = endpoints is not None
        self.processes: list[ManagedProcess] = []
        # The first process of each service; in cluster mode `replicas` holds them all.
        self.services: dict[str, ManagedProcess] = {}
        self.replicas: dict[str, list[ManagedProcess]] = {}
        # Result ingesters running apart from the catalog's API (cluster mode).
        self.ingesters: list[ManagedProcess] = []
        self.nats_nodes: list[ManagedProcess] = []
        self.gateway: ManagedProcess | None = None
        self.service_extra_env = service_extra_env or {}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.credentials: Credentials = load_or_create(self.data_dir)
        self.endpoints = endpoints or Endpoints(
            pg_host="127.0.0.1",
            pg_port=settings.pg_port,
            pg_user="loupe",
            pg_password=self.credentials.pg_password,
            pg_database="loupe",
            # Every node, comma-separated: clients fail over among them.
            nats_url=",".join(f"nats://127.0.0.1:{port}" for port, _, _ in settings.nats_nodes()),
            nats_user="loupe",
            nats_password=self.credentials.nats_password,
            s3_endpoint=f"127.0.0.1:{settings.s3_port}",
            s3_access_key=self.credentials.s3_access_key,
            s3_secret_key=self.credentials.s3_secret_key,
        )

    @property
    def admin_token(self) -> str:
        return self.credentials.admin_token

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    @property
    def console_url(self) -> str:
        return f"{self.gateway_url}/console/"

    def service_url(self, service: str, replica: int = 1) -> str:
        return f"http://127.0.0.1:{self.settings.port_of(service, replica)}"

    def _peer_url(self, service: str) -> str:
        """Where one service calls another: the process itself, or in cluster mode the
        gateway, which balances over the replicas and skips a dead one."""
        return self.gateway_url if self.settings.cluster else self.service_url(service)

    # --- starting -------------------------------------------------------------------------

    def check_ports(self) -> None:
        servers_owned = {"PostgreSQL", "NATS", "NATS monitoring", "S3"}
        for port, what, setting in self.settings.ports():
            if self.external and (what in servers_owned or what.startswith("SeaweedFS")):
                continue
            if port > 65535:  # a SeaweedFS gRPC port: its setting + 10000
                raise StackError(f"port {port} does not exist ({what}); set {setting} lower")
            if port_in_use(port):
                raise StackError(
                    f"port {port} is already in use ({what}); set {setting} to a free port"
                )

    def start(self) -> None:
        started = time.monotonic()
        try:
            self.check_ports()
            if not self.external:
                self._start_servers()
            self._setup()
            self._migrate()
            self._start_services()
            self._start_gateway()
        except BaseException:
            self.stop()
            raise
        self.report(f"ready in {time.monotonic() - started:.1f} s")

    def _spawn(self, process: ManagedProcess) -> ManagedProcess:
        process.start()
        self.processes.append(process)
        return process

    def _start_servers(self) -> None:
        s, e, timeout = self.settings, self.endpoints, self.settings.start_timeout_s
        self.report("starting PostgreSQL")
        pg = self._spawn(
            servers.postgres(
                self.data_dir, s.pg_port, e.pg_password, self.log_dir, s.stop_timeout_s
            )
        )
        nodes = s.nats_nodes()
        self.report("starting NATS JetStream" + (f" ({len(nodes)} nodes)" if s.cluster else ""))
        routes = [route for _, _, route in nodes] if s.cluster else []
        for node, (port, monitor, route) in enumerate(nodes, start=1):
            self.nats_nodes.append(
                self._spawn(
                    servers.nats(
                        self.data_dir,
                        port,
                        monitor,
                        e.nats_password,
                        self.log_dir,
                        s.stop_timeout_s,
                        node=node,
                        route_port=route,
                        routes=routes,
                    )
                )
            )
        self.report("starting the S3 server (SeaweedFS)")
        weed = self._spawn(
            servers.seaweedfs(
                self.data_dir,
                s3_port=s.s3_port,
                master_port=s.weed_master_port,
                volume_port=s.weed_volume_port,
                filer_port=s.weed_filer_port,
                access_key=e.s3_access_key,
                secret_key=e.s3_secret_key,
                log_dir=self.log_dir,
                replication="001" if s.cluster else "000",
            )
        )
        if s.cluster:
            self._spawn(
                servers.seaweedfs_volume(
                    self.data_dir,
                    node=2,
                    port=s.weed_volume_port_2,
                    master_port=s.weed_master_port,
                    log_dir=self.log_dir,
                )
            )
        wait_until("PostgreSQL", lambda: _pg_accepts(e), pg, timeout)
        asyncio.run(_create_database(e))
        for process, (_, monitor, _) in zip(self.nats_nodes, nodes, strict=True):
            self.wait_nats(process, monitor)
        wait_until("the S3 server", lambda: _s3_accepts(e), weed, timeout)
        _sync_object_writes(s.weed_filer_port)

    def wait_nats(self, process: ManagedProcess, monitor_port: int) -> None:
        """Until the node's JetStream answers (in a cluster: once it has joined and a meta
        leader is known)."""
        wait_until(
            f"NATS JetStream ({process.name})",
            lambda: http_ok(f"http://127.0.0.1:{monitor_port}/healthz"),
            process,
            self.settings.start_timeout_s,
        )

    def setup_settings(self, namespace: str | None = None) -> SetupSettings:
        """Set-up settings for these servers; another namespace gets buckets of its own."""
        e = self.endpoints
        namespace = self.namespace if namespace is None else namespace
        own = namespace != self.namespace
        return SetupSettings(
            nats_url=e.nats_url,
            nats_user=e.nats_user,
            nats_password=e.nats_password,
            namespace=namespace,
            s3_endpoint=e.s3_endpoint,
            s3_access_key=e.s3_access_key,
            s3_secret_key=e.s3_secret_key,
            images_bucket=f"{namespace}-images" if own else self.settings.images_bucket,
            backup_bucket=f"{namespace}-backups" if own else self.settings.backup_bucket,
            stream_replicas=len(self.settings.nats_nodes()),
        )

    def _setup(self) -> None:
        self.report("creating streams, buckets and the admin token")
        asyncio.run(bootstrap(self.setup_settings(), admin_token=self.admin_token))

    def service_env(self, service: str, replica: int = 1) -> dict[str, str]:
        cluster = self.settings.cluster
        return {
            **os.environ,
            **self.endpoints.service_env(
                service,
                port=self.settings.port_of(service, replica),
                images_bucket=self.settings.images_bucket,
                backup_bucket=self.settings.backup_bucket,
                namespace=self.namespace,
                log_level=self.settings.log_level,
                extra={
                    **({"IMAGES_URL": self._peer_url("images")} if service == "catalog" else {}),
                    # In cluster mode results are ingested by ingesters of their own.
                    **({"INGEST_ENABLED": "false"} if service == "catalog" and cluster else {}),
                    # The object store's capacity and free space, from SeaweedFS's master.
                    **(
                        {"STORE_ADMIN_URL": f"http://127.0.0.1:{self.settings.weed_master_port}"}
                        if service == "images" and not self.external
                        else {}
                    ),
                    **(
                        {
                            "CATALOG_URL": self._peer_url("catalog"),
                            "IMAGES_URL": self._peer_url("images"),
                        }
                        if service == "inspect"
                        else {}
                    ),
                    **self.service_extra_env.get(service, {}),
                },
            ),
        }

    def _migrate(self) -> None:
        self.report("applying database migrations")
        done = subprocess.run(
            [sys.executable, "-m", "loupe_catalog", "migrate"],
            env=self.service_env("catalog"),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"migrations failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def service_process(self, service: str, replica: int = 1) -> ManagedProcess:
        name = service if replica == 1 else f"{service}-{replica}"
        return ManagedProcess(
            name,
            [sys.executable, "-m", f"loupe_{service}"],
            env=self.service_env(service, replica),
            log_path=self.log_dir / f"{name}.log",
            stop_timeout_s=self.settings.stop_timeout_s,
        )

    def ingester_process(self, number: int) -> ManagedProcess:
        name = f"ingester-{number}"
        return ManagedProcess(
            name,
            [sys.executable, "-m", "loupe_catalog", "ingest"],
            env={
                **self.service_env("catalog"),
                "CATALOG_INGEST_METRICS_PORT": str(self.settings.port_of(INGESTER_METRICS, number)),
            },
            log_path=self.log_dir / f"{name}.log",
            stop_timeout_s=self.settings.stop_timeout_s,
        )

    def _start_services(self) -> None:
        self.report("starting services: " + ", ".join(SERVICES))
        for service in SERVICES:
            self.replicas[service] = [
                self._spawn(self.service_process(service, replica))
                for replica in self.settings.replicas(service)
            ]
            self.services[service] = self.replicas[service][0]
        if self.settings.cluster:
            self.report(f"starting {CLUSTER_REPLICAS} result ingesters")
            self.ingesters = [
                self._spawn(self.ingester_process(n)) for n in range(1, CLUSTER_REPLICAS + 1)
            ]
        for service in SERVICES:
            for replica in self.settings.replicas(service):
                self.wait_service_ready(service, replica)

    def wait_service_ready(self, service: str, replica: int = 1) -> None:
        wait_until(
            f"the {service} service" + (f" (replica {replica})" if replica > 1 else ""),
            lambda: http_ok(f"{self.service_url(service, replica)}/readyz"),
            self.replicas[service][replica - 1],
            self.settings.start_timeout_s,
        )

    def restart_service(self, service: str) -> ManagedProcess:
        """Stop one service (its first process) and start it again (used by fault tests)."""
        old = self.services[service]
        old.stop()
        self.processes.remove(old)
        self.services[service] = self._spawn(self.service_process(service))
        self.replicas[service][0] = self.services[service]
        self.wait_service_ready(service)
        return self.services[service]

    def kill(self, process: ManagedProcess) -> None:
        """SIGKILL one of the stack's processes (fault tests): no clean-up, no goodbye."""
        if process.popen is not None and process.running():
            process.popen.kill()
            process.popen.wait()

    def replaceable(self, process: ManagedProcess) -> bool:
        """Whether the platform goes on without `process` while it is started again: in
        cluster mode, a service process, an ingester or a NATS node (the others stand in)."""
        if not self.settings.cluster:
            return False
        stand_ins = [p for group in self.replicas.values() for p in group]
        return process in [*stand_ins, *self.ingesters, *self.nats_nodes]

    def revive(self, process: ManagedProcess) -> None:
        """Start a process of the stack again, with its own command and settings."""
        process.stop()
        process.start()

    def gateway_env(self) -> dict[str, str]:
        s = self.settings
        return {
            "LOUPE_GATEWAY_PORT": str(s.gateway_port),
            "LOUPE_GATEWAY_BIND": "127.0.0.1",
            "LOUPE_CORS_ORIGINS": s.cors_origins,
            "LOUPE_GATEWAY_READ_TIMEOUT": s.gateway_read_timeout,
            "LOUPE_GATEWAY_READ_IDLE_TIMEOUT": s.gateway_read_idle_timeout,
            "LOUPE_CONSOLE_DIR": str(s.console_dir.resolve()),
            # Several upstreams (cluster mode) are balanced, health-checked and failed over.
            "LOUPE_GATEWAY_UPSTREAMS": "cluster" if s.cluster else "single",
            **{
                f"LOUPE_{svc.upper()}_UPSTREAM": " ".join(
                    f"127.0.0.1:{s.port_of(svc, replica)}" for replica in s.replicas(svc)
                )
                for svc in SERVICES
            },
        }

    def _start_gateway(self) -> None:
        self.report("starting the gateway (Caddy)")
        self.gateway = self._spawn(
            servers.caddy(
                self.gateway_env(), self.data_dir, self.log_dir, self.settings.stop_timeout_s
            )
        )
        wait_until(
            "the gateway",
            lambda: http_ok(f"{self.gateway_url}/healthz"),
            self.gateway,
            self.settings.start_timeout_s,
        )

    # --- running and stopping -------------------------------------------------------------

    def first_exited(self) -> ManagedProcess | None:
        for process in self.processes:
            if not process.running():
                return process
        return None

    def stop(self) -> None:
        """Stop everything started, newest first: gateway, services, then the servers."""
        for process in reversed(self.processes):
            if process.running():
                self.report(f"stopping {process.name}")
            process.stop()
        self.processes.clear()
        self.services.clear()
        self.replicas.clear()
        self.ingesters.clear()
        self.nats_nodes.clear()
