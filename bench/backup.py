"""Backup and restore throughput, each beside a bare S3 copy of the same objects in the same run.

1. a full backup of `IMAGES` images of `IMAGE_BYTES` (seeded straight into the images bucket:
   the images service's thumbnailing is not what is measured) through the backup service,
   beside a bare copy (GET + PUT, the same `BACKUP_COPY_CONCURRENCY` threads) of the same
   objects into a scratch bucket;
2. an incremental backup with nothing changed, against the full one's time;
3. a restore of that set into a new database and a new images bucket (a second backup
   service), beside a bare copy of the same blobs out of the backup bucket.

Each bare copy runs once before and once after what it is compared with, and the baseline is
the mean of the two (an A-B-A design): the same copy run right after another gigabyte was
copied took 11-14 % longer than when it ran first (9.0-9.2 s against 8.1 s), so a baseline
measured only before favoured the baseline. The row keeps both times, and `vs_bare_before`
is the ratio against the first alone.

`python -m bench.backup` runs it alone on a fresh embedded stack; `BENCH_BACKUP_IMAGES` and
`BENCH_BACKUP_IMAGE_KB` scale it down for slow machines (the figures then say so)."""

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from minio import Minio
from minio.deleteobjects import DeleteObject
from tests.support import free_stack_ports

from bench import buckets
from loupe_shared.kit.s3 import ensure_bucket_sync
from loupe_stack.config import StackSettings
from loupe_stack.processes import ManagedProcess, free_port, http_ok, wait_until
from loupe_stack.stack import Stack

IMAGES = int(os.environ.get("BENCH_BACKUP_IMAGES", "2000"))
IMAGE_BYTES = int(os.environ.get("BENCH_BACKUP_IMAGE_KB", "512")) * 1024
CONCURRENCY = 8  # BACKUP_COPY_CONCURRENCY's default
Row = dict[str, Any]


def _s3(stack: Stack) -> Minio:
    return stack.endpoints.s3()


def _new_bucket(s3: Minio, name: str) -> str:
    ensure_bucket_sync(s3, name)
    buckets.first_write(s3, name)
    return name


def _drop_bucket(s3: Minio, bucket: str) -> None:
    names = [o.object_name for o in s3.list_objects(bucket, recursive=True) if o.object_name]
    for error in s3.remove_objects(bucket, [DeleteObject(n) for n in names]):
        raise RuntimeError(f"could not remove {error.name}")
    s3.remove_bucket(bucket)


def _seed(s3: Minio, bucket: str) -> list[str]:
    def one(n: int) -> str:
        data = os.urandom(IMAGE_BYTES)
        sha = hashlib.sha256(data).hexdigest()
        s3.put_object(
            bucket,
            f"blobs/{sha[:2]}/{sha}",
            io.BytesIO(data),
            len(data),
            content_type="image/jpeg",
            metadata={"kind": "master", "sha256": sha},
        )
        return sha

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(one, range(IMAGES)))


def _bare_copy_into_scratch(s3: Minio, source: str, keys: list[str], made: list[str]) -> float:
    """A bare copy of `keys` into a new scratch bucket, named in `made`: the buckets are dropped
    once everything is measured (deleting a gigabyte keeps SeaweedFS busy for a while: dropped
    at once, that work fell into the backup measured next — an incremental took 0.45 s)."""
    scratch = _new_bucket(s3, f"bench-{uuid.uuid4().hex[:8]}")
    made.append(scratch)
    return _bare_copy(s3, source, keys, scratch)


def _bare_copy(s3: Minio, source: str, keys: list[str], target: str) -> float:
    def one(key: str) -> None:
        response = s3.get_object(source, key)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        s3.put_object(target, key, io.BytesIO(data), len(data))

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, keys))
    return time.perf_counter() - started


def _wait(
    client: httpx.Client,
    path: str,
    timeout_s: float = 1800,
    phases: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Poll a restore until done: every 10 ms for the first second, then every 100 ms (so the
    polls do not take CPU from a long restore). `phases` gets the time at which each phase was
    first seen."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state: dict[str, Any] = client.get(path).json()
        if phases is not None:
            phases.setdefault(state.get("phase", "?"), round(time.monotonic() - started, 2))
        if state["status"] != "running":
            if state["status"] != "completed":
                raise RuntimeError(f"{path}: {state}")
            return state
        time.sleep(0.01 if time.monotonic() - started < 1 else 0.1)
    raise RuntimeError(f"{path} did not finish")


def _finished(client: httpx.Client, path: str, timeout_s: float = 1800) -> dict[str, Any]:
    """Ask with `wait` until the set is no longer running: the service answers as soon as it
    finished, so the time measured is the backup's (a poll every 10 ms, as restores are
    followed, added its interval and its requests' load: 0.03 s of an incremental's 0.22 s)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state: dict[str, Any] = client.get(path, params={"wait": 30}).json()
        if state["status"] != "running":
            if state["status"] != "completed":
                raise RuntimeError(f"{path}: {state}")
            return state
    raise RuntimeError(f"{path} did not finish")


def _timed_backup(client: httpx.Client, kind: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = client.post("/api/backups", json={"kind": kind})
    answer.raise_for_status()
    state = _finished(client, f"/api/backups/{answer.json()['id']}")
    return time.perf_counter() - started, state


def _sql(stack: Stack, statement: str) -> None:
    async def run() -> None:
        conn = await stack.endpoints.pg_connect("postgres")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _row(case: str, seconds: float, total: int, bare: tuple[float, float] | None = None) -> Row:
    """`bare`: the bare copy's times before and after; the baseline is their mean."""
    mb = total / 1e6
    row: Row = {
        "bench": "backup",
        "case": case,
        "objects": IMAGES,
        "mb": round(mb, 1),
        "seconds": round(seconds, 2),
        "mb_per_s": round(mb / seconds, 1),
    }
    if bare is not None:
        row["vs_bare_copy"] = round((bare[0] + bare[1]) / 2 / seconds, 2)
        row["vs_bare_before"] = round(bare[0] / seconds, 2)
    return row


def _bare_row(case: str, bare: tuple[float, float], total: int) -> Row:
    return {
        **_row(case, (bare[0] + bare[1]) / 2, total),
        "before_s": round(bare[0], 2),
        "after_s": round(bare[1], 2),
    }


def bench_backup(stack: Stack) -> list[Row]:
    s3 = _s3(stack)
    images = stack.settings.images_bucket
    buckets.first_write(s3, images)
    # The backup bucket's volumes grow before the timed full backup, as the scratch bucket's
    # do before the bare copy.
    buckets.first_write(s3, stack.settings.backup_bucket)
    keys = [f"blobs/{sha[:2]}/{sha}" for sha in _seed(s3, images)]
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    rows: list[Row] = []
    scratch: list[str] = []
    try:
        backup_id = _backup_rows(stack, s3, keys, headers, scratch, rows)
        rows += _restore_rows(stack, s3, backup_id, keys, scratch)
    finally:
        for bucket in scratch:
            _drop_bucket(s3, bucket)
    return rows


def _backup_rows(
    stack: Stack,
    s3: Minio,
    keys: list[str],
    headers: dict[str, str],
    scratch: list[str],
    rows: list[Row],
) -> str:
    """The bare copy, full and incremental rows, appended to `rows`; answers the full set's id."""
    images = stack.settings.images_bucket
    total = IMAGES * IMAGE_BYTES
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=60) as client:
        before_s = _bare_copy_into_scratch(s3, images, keys, scratch)
        full_s, full = _timed_backup(client, "full")
        incremental_s, incremental = _timed_backup(client, "incremental")
        bare = (before_s, _bare_copy_into_scratch(s3, images, keys, scratch))
        rows.append(_bare_row("bare S3 copy (GET + PUT)", bare, total))
        rows.append(_row("full backup", full_s, total, bare))
        rows.append(
            {
                "bench": "backup",
                "case": "incremental, nothing changed",
                "objects": IMAGES,
                "seconds": round(incremental_s, 2),
                "vs_full": round(incremental_s / full_s, 3),
                "phases": incremental["progress"]["phase_seconds"],
            }
        )
    return str(full["id"])


def _restore_rows(
    stack: Stack, s3: Minio, backup_id: str, keys: list[str], scratch: list[str]
) -> list[Row]:
    """Restore into a new database and images bucket, served by a second backup service."""
    total = IMAGES * IMAGE_BYTES
    database, bucket = f"bench_{uuid.uuid4().hex[:8]}", f"bench-restore-{uuid.uuid4().hex[:8]}"
    _sql(stack, f'CREATE DATABASE "{database}"')
    _new_bucket(s3, bucket)
    port = free_port()
    env = {
        **stack.service_env("backup"),
        "BACKUP_DB_NAME": database,
        "BACKUP_IMAGES_BUCKET": bucket,
        "BACKUP_PORT": str(port),
    }
    catalog_env = {**stack.service_env("catalog"), "CATALOG_DB_NAME": database}
    subprocess.run(
        [sys.executable, "-m", "loupe_catalog", "migrate"],
        env=catalog_env,
        check=True,
        capture_output=True,
    )
    process = ManagedProcess(
        "bench-backup",
        [sys.executable, "-m", "loupe_backup"],
        env=env,
        log_path=stack.log_dir / "bench-backup.log",
    )
    process.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until("bench backup service", lambda: http_ok(f"{url}/readyz"), process, 60)
        blob_keys = [f"blobs/{k.rsplit('/', 1)[-1][:2]}/{k.rsplit('/', 1)[-1]}" for k in keys]
        before_s = _bare_copy_into_scratch(s3, stack.settings.backup_bucket, blob_keys, scratch)
        headers = {"Authorization": f"Bearer {stack.admin_token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            started = time.perf_counter()
            answer = client.post(
                f"/api/backups/{backup_id}/restore", json={"mode": "empty", "dry_run": False}
            )
            answer.raise_for_status()
            answered_s = time.perf_counter() - started
            seen: dict[str, float] = {}
            _wait(client, f"/api/backups/{backup_id}/restores/{answer.json()['id']}", phases=seen)
            restore_s = time.perf_counter() - started
        after_s = _bare_copy_into_scratch(s3, stack.settings.backup_bucket, blob_keys, scratch)
        bare = (before_s, after_s)
    finally:
        process.stop()
        _drop_bucket(s3, bucket)
        _sql(stack, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return [
        _bare_row("bare S3 copy out of the backup bucket", bare, total),
        {
            **_row("restore (new database, new images bucket)", restore_s, total, bare),
            "answered_in_s": round(answered_s, 3),
            "phases_seen_at_s": seen,
        },
    ]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="loupe-bench-backup-") as directory:
        ports = free_stack_ports()
        settings = StackSettings.model_validate(
            {"data_dir": Path(directory), **{k.lower(): v for k, v in ports.items()}}
        )
        stack = Stack(settings)
        stack.start()
        try:
            for row in bench_backup(stack):
                print(json.dumps(row))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
