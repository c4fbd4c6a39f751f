"""Making a backup set: one database snapshot, then every object of the images bucket copied
content-addressed into the backup bucket (only those it lacks) while the data files are sent,
then the manifest. The manifest is written last and the record marked completed after it, so
a set that stopped anywhere before is never taken for a complete one; what it did copy are
verified, content-addressed blobs that later sets can share."""

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from minio import Minio

from loupe_backup.backups import database, layout, objects
from loupe_backup.backups.manifest import Manifest, ObjectEntry, TableFile
from loupe_backup.backups.progress import ProgressReporter
from loupe_backup.backups.records import BackupRecord
from loupe_backup.settings import BackupSettings
from loupe_shared import __version__
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.tasks import cancel_and_wait

_log = get_logger("backup.creator")
# A database connection for one snapshot, given back afterwards.
Connections = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]
# What the images bucket holds: blobs, their thumbnails and their processing status.
IMAGE_PREFIXES = ("blobs/", "thumbnails/", "status/")
T = TypeVar("T")


class Copier:
    """Runs blocking object work on a bounded pool of threads."""

    def __init__(self, executor: ThreadPoolExecutor, concurrency: int) -> None:
        self.executor = executor
        self.limit = asyncio.Semaphore(concurrency)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.limit:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


def list_backup_blobs(s3: Minio, bucket: str) -> set[str]:
    return objects.names(s3, bucket, layout.BLOBS)


def _copy(
    s3: Minio, source: str, target: str, listed: objects.Listed, present: set[str]
) -> tuple[ObjectEntry | None, dict[str, Any] | None, bool]:
    fetched = objects.fetch(s3, source, listed.key)
    if fetched is None:
        return None, None, False  # deleted since it was listed: not part of this set
    if listed.key.startswith("blobs/") and listed.key.rsplit("/", 1)[-1] != fetched.sha256:
        problem = {"key": listed.key, "problem": "mismatch", "actual_sha256": fetched.sha256}
        return None, problem, False
    entry = ObjectEntry(
        key=listed.key,
        sha256=fetched.sha256,
        size=len(fetched.data),
        content_type=fetched.content_type,
        metadata=fetched.metadata,
        etag=listed.etag,
    )
    copied = False
    if fetched.sha256 not in present:
        objects.put_checked(
            s3, target, layout.blob_key(fetched.sha256), fetched.data, fetched.sha256
        )
        present.add(fetched.sha256)
        copied = True
    return entry, None, copied


class BackupCreator:
    def __init__(
        self, settings: BackupSettings, s3: Minio, copier: Copier, connection: Connections
    ) -> None:
        self.settings = settings
        self.s3 = s3
        self.copier = copier
        self.connection = connection

    async def run(
        self,
        record: BackupRecord,
        reporter: ProgressReporter,
        parent: Awaitable[Manifest | None],
    ) -> Manifest:
        """`parent`: the parent set's manifest (None for a full backup), awaited only when the
        objects are compared with it."""
        work = Path(self.settings.work_dir) if self.settings.work_dir else None
        with tempfile.TemporaryDirectory(prefix="loupe-backup-", dir=work) as directory:
            # The first phase is saved while the work begins (a PUT and a publish).
            reporter.begin("snapshot")
            # What the backup bucket holds is listed meanwhile (it only ever gains blobs a
            # running backup can use), and so are the images once the database's snapshot is
            # fixed: every blob a row of the snapshot names was stored before that row was
            # committed, so a listing begun after the snapshot finds it.
            present_task = asyncio.create_task(
                asyncio.to_thread(list_backup_blobs, self.s3, self.settings.backup_bucket)
            )
            listing: list[asyncio.Task[list[objects.Listed]]] = []
            sending: asyncio.Task[None] | None = None

            def snapshot_taken() -> None:
                if record.include.images:
                    listing.append(asyncio.create_task(self._list_images()))

            try:
                async with self.connection() as conn:
                    dumped, revisions = await database.dump(
                        conn, record.include, Path(directory), snapshot_taken
                    )
                tables = [
                    TableFile(
                        table=item.table.name,
                        file=f"data/{item.table.name}.csv",
                        rows=item.rows,
                        sha256=item.sha256,
                        size=item.size,
                        columns=item.table.columns,
                        partitions=item.table.partitions,
                    )
                    for item in dumped
                ]
                # The data files need nothing the listing finds: they are sent meanwhile.
                sending = asyncio.create_task(self._send_data(record, dumped, tables))
                await reporter.report("listing")
                listed = await listing[0] if listing else []
            except BaseException:
                await cancel_and_wait([present_task, *listing, *([sending] if sending else [])])
                raise
            try:
                p = record.progress
                p.objects_total = len(listed) + len(dumped)
                p.bytes_total = sum(o.size for o in listed) + sum(t.size for t in tables)
                await reporter.report("objects")
                present = await present_task
                entries, problems = await self._copy_objects(
                    listed, present, reporter, await parent
                )
                await reporter.report("data")
                # The data files were sent while the objects were listed and copied; they
                # are counted once the totals are known.
                await sending
            except BaseException:
                await cancel_and_wait([present_task, sending])
                raise
            for table in tables:
                reporter.add(objects=1, bytes_=table.size, copied=True)
            await reporter.report()
        return Manifest(
            backup_id=record.id,
            kind=record.kind,
            parent_id=record.parent_id,
            created_at=record.created_at,
            app_version=__version__,
            alembic_revisions=revisions,
            include=record.include,
            tables=tables,
            objects=sorted(entries, key=lambda e: e.key),
            source_problems=problems,
        )

    async def _send_data(
        self, record: BackupRecord, dumped: list[database.Dumped], tables: list[TableFile]
    ) -> None:
        async def upload(item: database.Dumped, table: TableFile) -> None:
            await self.copier.run(
                objects.put_file,
                self.s3,
                self.settings.backup_bucket,
                layout.data_key(record.id, table.file),
                item.path,
                "text/csv",
            )

        async with asyncio.TaskGroup() as group:
            for item, table in zip(dumped, tables, strict=True):
                group.create_task(upload(item, table))

    async def _list_images(self) -> list[objects.Listed]:
        def run(prefix: str) -> list[objects.Listed]:
            return list(objects.listing(self.s3, self.settings.images_bucket, prefix))

        found = await asyncio.gather(*(asyncio.to_thread(run, p) for p in IMAGE_PREFIXES))
        return [item for part in found for item in part]

    async def _copy_objects(
        self,
        listed: list[objects.Listed],
        present: set[str],
        reporter: ProgressReporter,
        parent: Manifest | None,
    ) -> tuple[list[ObjectEntry], list[dict[str, Any]]]:
        bucket = self.settings.backup_bucket
        known = {e.key: e for e in parent.objects} if parent is not None else {}
        entries: list[ObjectEntry] = []
        problems: list[dict[str, Any]] = []

        changed: list[objects.Listed] = []
        for item in listed:
            previous = known.get(item.key)
            if (
                previous is not None
                and previous.etag == item.etag
                and previous.size == item.size
                and previous.sha256 in present
            ):
                entries.append(previous)  # unchanged since the parent set: nothing to read
                reporter.add(objects=1, bytes_=item.size)
            else:
                changed.append(item)
        await reporter.report()

        async def one(item: objects.Listed) -> None:
            entry, problem, copied = await self.copier.run(
                _copy, self.s3, self.settings.images_bucket, bucket, item, present
            )
            if entry is not None:
                entries.append(entry)
            if problem is not None:
                _log.warning("backup.source_object_corrupt", **problem)
                problems.append(problem)
            reporter.add(objects=1, bytes_=item.size, copied=copied)
            await reporter.report()

        async with asyncio.TaskGroup() as group:
            for item in changed:
                group.create_task(one(item))
        return entries, problems
