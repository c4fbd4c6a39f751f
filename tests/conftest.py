"""The session's servers and platform. One switch, `LOUPE_TEST_STACK`, picks where the
servers come from (see tests/README.md); the services and the gateway always run as real
processes against them."""

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from loupe_shared.contracts.streams import TOKENS_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.auth import Role, TokenStore
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.config import StackSettings
from loupe_stack.endpoints import Endpoints
from loupe_stack.processes import free_port
from loupe_stack.stack import Stack
from tests.databases import Databases
from tests.support import free_stack_ports

# Where every test is slow (process start-up, migrations, whole installations), `slow` is
# given here by path, so `-m "not slow"` leaves them out without a marker in every file.
# Paths are relative to this folder; a folder covers everything under it.
SLOW_PATHS = (
    "backup",
    "cluster",
    "images",
    "results/test_ingest_faults.py",
    "stack/test_run.py",
)


# `make test` runs the suite on two pytest-xdist workers, each with a session stack of its
# own, scheduled by scope (`pytest_xdist_make_scheduler` below): a file's tests stay on one
# worker (its module fixtures are made once), and these folders stay whole because a session
# or package fixture of theirs is costly: the backup tests' populated `source` installation,
# the cluster stack, the inspection rig.
WHOLE_FOLDERS = ("backup", "cluster", "inspect")
# The scopes that take longest, run first (in this order), so that neither worker is left
# with a long one at the end; the rest follow in collection order.
LONGEST_FIRST = (
    "backup",
    "cluster",
    "gateway/test_schemathesis.py",
    "inspect",
    "stack/test_run.py",
    "results/test_ingest_faults.py",
    "client/test_browser.py",
    "images/test_deletion_and_gc.py",
    "images/test_integrity_and_usage.py",
    "images/test_replicas.py",
)


def scope_of(where: str) -> str:
    """The scheduling scope of a test at `where` (its path under tests/)."""
    path = where.split("::", 1)[0].removeprefix("tests/")
    folder = path.split("/", 1)[0]
    return folder if folder in WHOLE_FOLDERS else path


def _rank(scope: str) -> int:
    return LONGEST_FIRST.index(scope) if scope in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    slow = pytest.mark.slow
    for item in items:
        try:
            where = item.path.relative_to(here).as_posix()
        except ValueError:
            continue
        if any(where == p or where.startswith(p + "/") for p in SLOW_PATHS):
            item.add_marker(slow)
    # Stable: within a rank, collection order (so a file's tests stay together, in order).
    items.sort(key=lambda item: _rank(scope_of(item.nodeid)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole scopes (files; the folders above) to each worker, in the order collected."""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class ByScope(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    config.option.loadscopereorder = False  # keep the longest-first order above
    return ByScope(config, log)


def _testcontainers(resources: ExitStack) -> Endpoints:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.minio import MinioContainer
    from testcontainers.postgres import PostgresContainer

    pg = resources.enter_context(PostgresContainer("postgres:18", driver=None))
    minio = resources.enter_context(MinioContainer("minio/minio:RELEASE.2025-09-07T16-13-09Z"))
    nats = resources.enter_context(
        DockerContainer("nats:2.11")
        .with_command("-js --user loupe --pass loupe-test")
        .with_exposed_ports(4222)
    )
    wait_for_logs(nats, "Server is ready")
    minio_config = minio.get_config()
    return Endpoints(
        pg_host=pg.get_container_host_ip(),
        pg_port=int(pg.get_exposed_port(5432)),
        pg_user=pg.username,
        pg_password=pg.password,
        pg_database=pg.dbname,
        nats_url=f"nats://{nats.get_container_host_ip()}:{nats.get_exposed_port(4222)}",
        nats_user="loupe",
        nats_password="loupe-test",
        s3_endpoint=minio_config["endpoint"],
        s3_access_key=minio_config["access_key"],
        s3_secret_key=minio_config["secret_key"],
    )


def _external() -> Endpoints:
    dsn = make_url(os.environ["LOUPE_TEST_PG_DSN"])
    return Endpoints(
        pg_host=dsn.host or "127.0.0.1",
        pg_port=dsn.port or 5432,
        pg_user=dsn.username or "postgres",
        pg_password=dsn.password or "",
        pg_database=dsn.database or "loupe",
        nats_url=os.environ["LOUPE_TEST_NATS_URL"],
        nats_user=os.environ.get("LOUPE_TEST_NATS_USER", ""),
        nats_password=os.environ.get("LOUPE_TEST_NATS_PASSWORD", ""),
        s3_endpoint=os.environ["LOUPE_TEST_S3_ENDPOINT"],
        s3_access_key=os.environ["LOUPE_TEST_S3_ACCESS_KEY"],
        s3_secret_key=os.environ["LOUPE_TEST_S3_SECRET_KEY"],
    )


@pytest.fixture(scope="session")
def frontend_port() -> int:
    """The port the browser tests serve their pages on; its origin may call the gateway."""
    return free_port()


@pytest.fixture(scope="session")
def platform(frontend_port: int) -> Iterator[Stack]:
    """Servers, migrations, buckets, streams, the four services and the gateway."""
    mode = os.environ.get("LOUPE_TEST_STACK", "embedded")
    base = Path(tempfile.mkdtemp(prefix="loupe-test-"))
    ports = free_stack_ports()
    settings = StackSettings.model_validate(
        {
            "data_dir": base / "data",
            **{name.lower(): port for name, port in ports.items()},
            "cors_origins": (
                f"http://frontend.test http://localhost:5173 http://127.0.0.1:{frontend_port}"
            ),
            "stop_timeout_s": 10,
        }
    )
    with ExitStack() as resources:
        if mode == "embedded":
            endpoints = None
        elif mode == "testcontainers":
            endpoints = _testcontainers(resources)
        elif mode == "external":
            endpoints = _external()
        else:
            raise pytest.UsageError(
                f"LOUPE_TEST_STACK={mode}: use embedded, testcontainers or external"
            )
        stack = Stack(settings, endpoints=endpoints)
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="session")
def databases(platform: Stack) -> Iterator[Databases]:
    """Migrated databases for installations of the tests' own, copied from one template."""
    made = Databases(platform)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def admin_token(platform: Stack) -> str:
    return platform.admin_token


@pytest.fixture(scope="session")
def gateway(platform: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway_url, timeout=15) as client:
        yield client


@pytest.fixture(scope="session")
def nats_settings(platform: Stack) -> NatsSettings:
    return platform.endpoints.nats()


@pytest.fixture(scope="session")
def cli_env(platform: Stack) -> dict[str, str]:
    """Environment for the `loupe` CLI pointed at the session's installation."""
    e = platform.endpoints
    return {
        **os.environ,
        "LOUPE_NATS_URL": e.nats_url,
        "LOUPE_NATS_USER": e.nats_user,
        "LOUPE_NATS_PASSWORD": e.nats_password,
    }


class TokenMaker:
    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings

    def __call__(self, role: Role, name: str = "test", expires_at: datetime | None = None) -> str:
        async def create() -> str:
            nc = await connect(self.settings, "loupe-tests")
            try:
                store = TokenStore(
                    nc.jetstream(), stream_name(TOKENS_BUCKET, self.settings.namespace)
                )
                _, token = await store.create(name, role, "tests", expires_at=expires_at)
                return token
            finally:
                await nc.drain()

        return asyncio.run(create())


@pytest.fixture(scope="session")
def make_token(nats_settings: NatsSettings) -> TokenMaker:
    return TokenMaker(nats_settings)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
