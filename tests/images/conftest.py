"""An image store of a test's own: a catalog (own database, own NATS namespace) and an images
service (own bucket) started for one test, so garbage collection and scrubbing see only the
test's data."""

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loupe_shared.kit.auth import Role
from loupe_stack.processes import ManagedProcess, free_port, http_ok, wait_until
from loupe_stack.stack import Stack
from tests.catalog.conftest import (  # noqa: F401 (fixtures used here)
    IsolatedCatalog,
    isolated_catalog,
    scratch_database,
)
from tests.conftest import TokenMaker, auth


class IsolatedStore:
    def __init__(
        self, platform: Stack, catalog: IsolatedCatalog, admin_token: str, log_dir: Path
    ) -> None:
        self.platform = platform
        self.catalog = catalog
        self.namespace = catalog.env["CATALOG_NAMESPACE"]
        self.bucket = f"{self.namespace}-images"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.admin = auth(admin_token)
        self.env = {
            **platform.service_env("images"),
            "IMAGES_PORT": str(self.port),
            "IMAGES_NAMESPACE": self.namespace,
            "IMAGES_IMAGES_BUCKET": self.bucket,
            # Nothing runs by itself: the tests start collections and scrubs.
            "IMAGES_GC_INTERVAL_S": "0",
            "IMAGES_SCRUB_INTERVAL_S": "0",
        }
        self.processes: list[ManagedProcess] = []
        self.s3 = platform.endpoints.s3()
        self.nats = platform.endpoints.nats(self.namespace)

    def token(self, role: Role) -> dict[str, str]:
        return auth(TokenMaker(self.nats)(role))

    def start_catalog(self) -> ManagedProcess:
        process = self.catalog.start(CATALOG_IMAGES_URL=self.url)
        self.processes.append(process)
        return process

    def start_images(self, **env: str) -> ManagedProcess:
        process = ManagedProcess(
            "images",
            [sys.executable, "-m", "loupe_images"],
            env={**self.env, **env},
            log_path=self.log_dir / "images.log",
        )
        process.start()
        self.processes.append(process)
        wait_until("images", lambda: http_ok(f"{self.url}/healthz"), process, 60)
        return process

    def client(self, url: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=url or self.url, timeout=60)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def isolated_store(
    platform: Stack,
    isolated_catalog: IsolatedCatalog,  # noqa: F811 (the fixture imported above)
    admin_token: str,
    tmp_path: Path,
) -> Iterator[IsolatedStore]:
    store = IsolatedStore(platform, isolated_catalog, admin_token, tmp_path)
    try:
        yield store
    finally:
        store.stop()
