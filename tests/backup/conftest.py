"""Installations of the tests' own for backup and restore: each has its own database, NATS
namespace and buckets, and runs its own catalog, images and backup processes, so wiping and
restoring never touches the session's platform."""

import asyncio
import hashlib
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psycopg
import pytest
from minio import Minio

from loupe_backup.backups.service import SNAPSHOT_CONNECTION
from loupe_shared.kit.auth import Role
from loupe_shared.kit.nats import connect
from loupe_stack.bootstrap import bootstrap
from loupe_stack.processes import ManagedProcess, free_port, http_ok, wait_until
from loupe_stack.stack import Stack
from tests.catalog.conftest import _drop_bucket
from tests.catalog.helpers import new_program
from tests.conftest import TokenMaker, auth
from tests.databases import Databases, sql
from tests.support import eventually


def png(seed: int, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return bytes(encoded.tobytes())


class Installation:
    """One Loupe installation on the session's servers: database `database` (a migrated copy
    of the session's template), namespace, images bucket and backup bucket."""

    def __init__(
        self,
        platform: Stack,
        admin_token: str,
        log_dir: Path,
        databases: Databases,
        *,
        backup_bucket: str | None = None,
    ) -> None:
        self.platform = platform
        self.databases = databases
        self.namespace = f"b{uuid.uuid4().hex[:8]}"
        self.database = databases.create()
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        setup = platform.setup_settings(self.namespace)
        self.images_bucket = setup.images_bucket
        self.backup_bucket = backup_bucket or setup.backup_bucket
        self.owns_backup_bucket = backup_bucket is None
        asyncio.run(bootstrap(setup, admin_token=admin_token))
        self.admin = auth(admin_token)
        self.ports = {name: free_port() for name in ("catalog", "images", "backup")}
        self.processes: dict[str, ManagedProcess] = {}
        self.s3 = platform.endpoints.s3()
        self.nats = platform.endpoints.nats(self.namespace)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self, service: str, **extra: str) -> dict[str, str]:
        prefix = service.upper() + "_"
        values = {
            "PORT": str(self.ports[service]),
            "NAMESPACE": self.namespace,
            "DB_NAME": self.database,
            "IMAGES_BUCKET": self.images_bucket,
            "BACKUP_BUCKET": self.backup_bucket,
        }
        if service == "catalog":
            values["IMAGES_URL"] = self.url("images")
        if service == "images":
            values |= {"GC_INTERVAL_S": "0", "SCRUB_INTERVAL_S": "0"}
        if service == "backup":
            # A killed process's jobs are marked interrupted once their leases expired.
            values |= {
                "MAINTENANCE_LEASE_S": "6",
                "PROGRESS_INTERVAL_S": "0.05",
                "LEASE_TTL_S": "5",
            }
        return {
            **self.platform.service_env(service),
            **{prefix + k: v for k, v in values.items()},
            **{prefix + k.upper(): v for k, v in extra.items()},
        }

    def start(self, service: str, **extra: str) -> ManagedProcess:
        process = ManagedProcess(
            service,
            [sys.executable, "-m", f"loupe_{service}"],
            env=self.env(service, **extra),
            log_path=self.log_dir / f"{service}.log",
        )
        process.start()
        self.processes[service] = process
        wait_until(service, lambda: http_ok(f"{self.url(service)}/readyz"), process, 60)
        return process

    def stop(self, service: str) -> None:
        process = self.processes.pop(service, None)
        if process is not None:
            process.stop()

    def kill(self, service: str) -> None:
        process = self.processes.pop(service)
        assert process.popen is not None
        process.popen.kill()
        process.popen.wait(10)

    def client(self, service: str) -> httpx.Client:
        return httpx.Client(base_url=self.url(service), timeout=60)

    def token(self, role: Role) -> dict[str, str]:
        return auth(TokenMaker(self.nats)(role))

    def sql(self, statement: str) -> list[Any]:
        return sql(self.platform, self.database, statement)

    # --- what the installation holds ---------------------------------------------------------

    def rows(self) -> dict[str, list[str]]:
        """Every row of every table, as text, sorted."""
        tables = [
            r["relname"]
            for r in self.sql(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            )
        ]
        return {
            t: sorted(r[0] for r in self.sql(f'SELECT t::text FROM "{t}" t'))  # noqa: S608
            for t in tables
        }

    def objects(self) -> dict[str, tuple[str, str, dict[str, str]]]:
        """Every object of the images bucket: SHA-256, content type, user metadata."""
        found = {}
        for item in self.s3.list_objects(self.images_bucket, recursive=True):
            assert item.object_name is not None
            response = self.s3.get_object(self.images_bucket, item.object_name)
            try:
                data = response.read()
                meta = {
                    k.lower(): v
                    for k, v in response.headers.items()
                    if k.lower().startswith("x-amz-meta-")
                }
                found[item.object_name] = (
                    hashlib.sha256(data).hexdigest(),
                    response.headers.get("content-type", ""),
                    meta,
                )
            finally:
                response.close()
                response.release_conn()
        return found

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        self.databases.drop(self.database)
        buckets = [self.images_bucket] + ([self.backup_bucket] if self.owns_backup_bucket else [])
        for bucket in buckets:
            _drop_bucket(self.s3, bucket)


# --- driving an installation ----------------------------------------------------------------


def upload(inst: Installation, data: bytes, token: dict[str, str]) -> str:
    with inst.client("images") as images:
        answer = images.post(
            "/api/images?kind=master",
            content=data,
            headers={**token, "Content-Type": "image/png"},
        )
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["sha256"])


def populate(inst: Installation, seed: int = 0, programs: int = 3) -> dict[str, Any]:
    """Programs with two revisions each (each with its master image) and results."""
    engineer = inst.token(Role.ENGINEER)
    line = inst.token(Role.LINE)
    made: dict[str, Any] = {"programs": [], "images": []}
    with inst.client("catalog") as catalog:
        for n in range(programs):
            first = upload(inst, png(seed * 100 + 2 * n), engineer)
            second = upload(inst, png(seed * 100 + 2 * n + 1), engineer)
            made["images"] += [first, second]
            created = catalog.post(
                "/api/programs",
                json=new_program(master_image_sha256=first),
                headers=engineer,
            )
            assert created.status_code == 201, created.text
            body = created.json()
            changed = new_program(name=body["name"], master_image_sha256=second)
            saved = catalog.put(
                f"/api/programs/{body['id']}",
                json=changed,
                headers={**engineer, "If-Match": created.headers["etag"]},
            )
            assert saved.status_code == 200, saved.text
            made["programs"].append(body["id"])
        results = [
            {
                "result_id": str(uuid.uuid4()),
                "line_id": "line-1",
                "program_id": made["programs"][i % programs],
                "program_revision": 2,
                "verdict": "pass" if i % 3 else "fail",
                "score": i / 10,
                "captured_at": f"2026-11-{1 + i % 20:02d}T10:00:00Z",
            }
            for i in range(30)
        ]
        sent = catalog.post("/api/results", json={"results": results}, headers=line)
        assert sent.status_code == 202, sent.text
    settle(inst, results=len(results), uploads=len(made["images"]))
    return made


def settle(inst: Installation, *, results: int, uploads: int) -> None:
    """Wait until what was sent has landed: results ingested, uploads audited and their
    thumbnails recorded (both arrive as events), every outbox event published."""
    counts = (
        "SELECT (SELECT count(*) FROM results), "
        "(SELECT count(*) FROM audit_log WHERE action = 'images.upload'), "
        "(SELECT count(*) FROM outbox WHERE published_at IS NULL), "
        "(SELECT count(*) FROM image_records WHERE thumbnails = '[]'::jsonb)"
    )

    def landed() -> bool:
        found_results, audited, pending, unthumbnailed = inst.sql(counts)[0]
        return bool(
            found_results >= results and audited >= uploads and pending == unthumbnailed == 0
        )

    eventually("results, audit records and outbox settled", landed, timeout_s=30)


def events(inst: Installation, subject: str) -> list[dict[str, Any]]:
    """Every event the installation's streams hold on `subject`."""

    async def read() -> list[dict[str, Any]]:
        nc = await connect(inst.nats, "tests")
        try:
            js = nc.jetstream()
            sub = await js.subscribe(f"{inst.namespace}.{subject}", ordered_consumer=True)
            found: list[dict[str, Any]] = []
            while True:
                try:
                    message = await sub.next_msg(timeout=0.5)
                except TimeoutError:  # nats-py raises its own subclass or the builtin
                    return found
                found.append(json.loads(message.data))
        finally:
            await nc.drain()

    return asyncio.run(read())


def backup(
    inst: Installation, body: dict[str, Any] | None = None, token: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start a backup and wait for it to finish."""
    with inst.client("backup") as client:
        started = client.post("/api/backups", json=body or {}, headers=token or inst.admin)
        assert started.status_code == 202, started.text
        backup_id = started.json()["id"]
        return wait_backup(client, inst, backup_id)


def wait_backup(client: httpx.Client, inst: Installation, backup_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def finished() -> bool:
        state.update(client.get(f"/api/backups/{backup_id}", headers=inst.admin).json())
        return bool(state["status"] != "running")

    eventually(f"backup {backup_id} finished", finished, timeout_s=60)
    return state


MakeInstallation = Callable[..., Installation]


@pytest.fixture
def bucket(platform: Stack) -> Iterator[tuple[Minio, str]]:
    """An empty bucket of the test's own on the session's object store (the minio seams'
    tests), removed with what it holds."""
    s3 = platform.endpoints.s3()
    name = f"seam-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(name)
    try:
        yield s3, name
    finally:
        for found in s3.list_objects(name, recursive=True):
            if found.object_name is not None:
                s3.remove_object(name, found.object_name)
        s3.remove_bucket(name)


@pytest.fixture
def make_installation(
    platform: Stack, admin_token: str, databases: Databases, tmp_path: Path
) -> Iterator[MakeInstallation]:
    made: list[Installation] = []

    def make(**kwargs: Any) -> Installation:
        inst = Installation(platform, admin_token, tmp_path / f"i{len(made)}", databases, **kwargs)
        made.append(inst)
        return inst

    try:
        yield make
    finally:
        for inst in reversed(made):
            inst.close()


@pytest.fixture(scope="session")
def source(
    platform: Stack,
    admin_token: str,
    databases: Databases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installation]:
    """A populated installation shared by the backup tests (which only add to it)."""
    inst = Installation(platform, admin_token, tmp_path_factory.mktemp("source"), databases)
    try:
        inst.start("images")
        inst.start("catalog")
        inst.start("backup")
        populate(inst)
        yield inst
    finally:
        inst.close()


def settle_images(inst: Installation) -> None:
    """Wait until the catalog's image records match the images bucket's blobs (records follow
    uploads and deletions as events) and every record has its thumbnails."""

    def landed() -> bool:
        blobs = sum(1 for _ in inst.s3.list_objects(inst.images_bucket, "blobs/", recursive=True))
        records, unthumbnailed = inst.sql(
            "SELECT count(*) FILTER (WHERE deleted_at IS NULL), "
            "count(*) FILTER (WHERE thumbnails = '[]'::jsonb) FROM image_records"
        )[0]
        return bool(records == blobs and unthumbnailed == 0)

    eventually("image records settled", landed, timeout_s=30)


# --- restores -------------------------------------------------------------------------------

PREFIXES = ("blobs/", "thumbnails/", "status/")


def stored_objects(inst: Installation) -> dict[str, Any]:
    """The images bucket's blobs, thumbnails and status objects (see `Installation.objects`)."""
    return {k: v for k, v in inst.objects().items() if k.startswith(PREFIXES)}


def start_restore(inst: Installation, backup_id: str, **body: Any) -> httpx.Response:
    with inst.client("backup") as client:
        return client.post(
            f"/api/backups/{backup_id}/restore",
            json={"dry_run": False, **body},
            headers=inst.admin,
        )


def restore_state(inst: Installation, backup_id: str, restore_id: str) -> dict[str, Any]:
    with inst.client("backup") as client:
        answer = client.get(f"/api/backups/{backup_id}/restores/{restore_id}", headers=inst.admin)
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()
    return state


def finished_restore(inst: Installation, backup_id: str, restore_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def done() -> bool:
        state.update(restore_state(inst, backup_id, restore_id))
        return bool(state["status"] != "running")

    eventually("restore finished", done, timeout_s=60)
    return state


# --- snapshots held up ----------------------------------------------------------------------


@contextmanager
def second_replica(inst: Installation, **extra: str) -> Iterator[tuple[ManagedProcess, str]]:
    """Another backup process of `inst` (a replica beside `inst.start("backup")`), ready; its
    process and URL. Stopped when the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "backup-2",
        [sys.executable, "-m", "loupe_backup"],
        env=inst.env("backup", port=str(port), **extra),
        log_path=inst.log_dir / "backup-2.log",
    )
    process.start()
    try:
        wait_until("backup 2", lambda: http_ok(f"{url}/readyz"), process, 60)
        yield process, url
    finally:
        process.stop()


@contextmanager
def table_locked(inst: Installation, table: str) -> Iterator[None]:
    """Hold an exclusive lock on `table` (so a snapshot waits on it) until the block ends."""
    e = inst.platform.endpoints
    with psycopg.connect(
        host=e.pg_host,
        port=e.pg_port,
        user=e.pg_user,
        password=e.pg_password,
        dbname=inst.database,
    ) as conn:
        conn.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        try:
            yield
        finally:
            conn.rollback()


SNAPSHOT_WAITING = (
    f"FROM pg_stat_activity WHERE application_name = '{SNAPSHOT_CONNECTION}' "
    "AND wait_event_type = 'Lock' AND datname = '{}'"
)


def waiting_on_lock(inst: Installation) -> bool:
    """Whether a backup's snapshot of `inst` waits on a lock."""
    return bool(inst.sql(f"SELECT count(*) {SNAPSHOT_WAITING.format(inst.database)}")[0][0])
