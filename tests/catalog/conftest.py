import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from minio.deleteobjects import DeleteObject

from loupe_stack.bootstrap import bootstrap
from loupe_stack.processes import ManagedProcess, free_port, http_ok, wait_until
from loupe_stack.stack import Stack
from tests.databases import sql


@pytest.fixture
def scratch_database(platform: Stack) -> Iterator[str]:
    """An empty database of the test's own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    sql(platform, "postgres", f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        sql(platform, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class IsolatedCatalog:
    """A catalog process of a test's own: its own database and NATS namespace (so it sees
    none of the platform's events), started and stopped by the test."""

    def __init__(self, platform: Stack, database: str, namespace: str, log_dir: Path) -> None:
        self.platform = platform
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.env = {
            **platform.service_env("catalog"),
            "CATALOG_DB_NAME": database,
            "CATALOG_NAMESPACE": namespace,
            "CATALOG_PORT": str(self.port),
        }

    def start(self, **env: str) -> ManagedProcess:
        process = ManagedProcess(
            "catalog",
            [sys.executable, "-m", "loupe_catalog"],
            env={**self.env, **env},
            log_path=self.log_dir / "catalog.log",
        )
        process.start()
        wait_until("catalog", lambda: http_ok(f"{self.url}/readyz"), process, 60)
        return process


def _drop_bucket(s3: Minio, bucket: str) -> None:
    """Empty and remove a test's bucket (each bucket holds storage on the S3 server)."""
    if not s3.bucket_exists(bucket):
        return
    names = [o.object_name for o in s3.list_objects(bucket, recursive=True) if o.object_name]
    for error in s3.remove_objects(bucket, [DeleteObject(name) for name in names]):
        raise AssertionError(f"could not remove {error.name}: {error.message}")
    s3.remove_bucket(bucket)


@pytest.fixture
def isolated_catalog(
    platform: Stack, scratch_database: str, admin_token: str, tmp_path: Path
) -> Iterator[IsolatedCatalog]:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    settings = platform.setup_settings(namespace)
    asyncio.run(bootstrap(settings, admin_token=admin_token))
    catalog = IsolatedCatalog(platform, scratch_database, namespace, tmp_path)
    subprocess.run(
        [sys.executable, "-m", "loupe_catalog", "migrate"],
        env=catalog.env,
        check=True,
        capture_output=True,
    )
    yield catalog
    s3 = platform.endpoints.s3()
    for bucket in (settings.images_bucket, settings.backup_bucket):
        _drop_bucket(s3, bucket)
