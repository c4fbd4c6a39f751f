"""Restoring a backup set.

Order, and why: every data file is fetched and checked against the manifest before anything
changes; a restore point (a backup of the current state) is taken; maintenance mode starts;
the blobs the images bucket lacks are copied in (each checked on the way); then one database
transaction empties every table, loads the data, resets sequences and runs the health check,
and only then commits. A failure anywhere rolls the transaction back and removes the blobs
that were added, so the installation is as it was; a restore killed midway leaves an
uncommitted transaction (which PostgreSQL discards) and, at most, unreferenced blobs.
"""

import asyncio
import csv
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from minio import Minio

from loupe_backup.backups import database, layout, objects
from loupe_backup.backups.compatibility import check
from loupe_backup.backups.creator import IMAGE_PREFIXES, Copier
from loupe_backup.backups.database import ALEMBIC, Table, quote
from loupe_backup.backups.manifest import Manifest, ObjectEntry, Partition, data_file
from loupe_backup.backups.records import RestoreRecord
from loupe_backup.settings import BackupSettings
from loupe_shared.kit import db
from loupe_shared.kit.logging import get_logger

_log = get_logger("backup.restorer")
Phase = Callable[[str], Awaitable[None]]


class RestoreRefused(Exception):
    """The restore cannot start (nothing was changed)."""


class HealthCheckFailed(Exception):
    pass


def csv_columns(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as source:
        return next(csv.reader(source), [])


def image_blobs(s3: Minio, bucket: str) -> set[str]:
    return {o.key for o in objects.listing(s3, bucket, "blobs/")}


class Restorer:
    def __init__(self, settings: BackupSettings, s3: Minio, copier: Copier) -> None:
        self.settings = settings
        self.s3 = s3
        self.copier = copier

    async def plan(self, manifest: Manifest, mode: str) -> dict[str, Any]:
        """The dry run: what a restore would change, and whether it can."""
        conn = await db.connect(self.settings, "loupe-backup-plan")
        try:
            tables = await database.describe(conn)
            current = await database.revisions(conn)
            counts = await database.row_counts(conn, tables)
            user = await database.user_rows(conn, tables)
        finally:
            await conn.close()
        verdict = check(manifest, tables, current)
        missing = await self._missing_objects(manifest.objects)
        backed = {t.table: t.rows for t in manifest.tables}
        blockers = list(verdict.reasons) if verdict.status == "incompatible" else []
        if not manifest.include.complete:
            blockers.append("only complete backups (everything included) can be restored")
        occupied = {n: c for n, c in user.items() if c}
        if mode == "empty" and occupied:
            blockers.append("the installation is not empty: " + ", ".join(sorted(occupied)))
        warnings: list[str] = []
        if manifest.kind == "imported":
            warnings.append(
                f"imported archive: made outside this installation (by Loupe "
                f"{manifest.app_version}); check where it came from before restoring it"
            )
        if verdict.status == "migratable":
            warnings.append(
                "schema revisions to migrate: the backup is at "
                f"{', '.join(manifest.alembic_revisions) or 'none'}, this installation at "
                f"{', '.join(current) or 'none'}; its rows load into today's tables by column"
            )
        live = {t.name for t in tables}
        warnings += [
            f"table {t.table} is in the backup but not in this installation; it is left out"
            for t in manifest.tables
            if t.table not in live and t.table != ALEMBIC
        ]
        if mode == "replace":
            warnings.append(
                "every table is replaced; a restore point of the current data is taken first "
                "unless restore_point is false"
            )
        return {
            "mode": mode,
            "kind": manifest.kind,
            "warnings": warnings,
            "compatibility": verdict.status,
            "reasons": verdict.reasons,
            "backup_revisions": manifest.alembic_revisions,
            "current_revisions": current,
            "tables": {
                name: {"current_rows": counts.get(name, 0), "backup_rows": backed.get(name, 0)}
                for name in sorted({*counts, *backed} - {ALEMBIC})
            },
            "objects": len(manifest.objects),
            "objects_to_copy": len(missing),
            "bytes_to_copy": sum(o.size for o in missing),
            "can_restore": not blockers,
            "blockers": blockers,
        }

    async def _missing_objects(self, entries: list[ObjectEntry]) -> list[ObjectEntry]:
        def present() -> set[str]:
            found: set[str] = set()
            for prefix in IMAGE_PREFIXES:
                found |= {
                    o.key for o in objects.listing(self.s3, self.settings.images_bucket, prefix)
                }
            return found

        have = await asyncio.to_thread(present)
        return [e for e in entries if e.key not in have]

    async def fetch_data(self, manifest: Manifest, directory: Path) -> dict[str, Path]:
        """Every data file, checked against the manifest; raises before anything changed."""
        paths: dict[str, Path] = {}

        async def one(table: str, sha256: str, size: int) -> None:
            file = data_file(table)
            path = directory / f"{table}.csv"  # a validated identifier: no separator, no '..'
            key = layout.data_key(manifest.backup_id, file)
            found = await self.copier.run(
                objects.download, self.s3, self.settings.backup_bucket, key, path
            )
            if found is None:
                raise RestoreRefused(f"data file {file} is missing from the backup")
            if found != (sha256, size):
                raise RestoreRefused(f"data file {file} does not match its checksum")
            paths[table] = path

        async with asyncio.TaskGroup() as group:
            for t in manifest.tables:
                group.create_task(one(t.table, t.sha256, t.size))
        return paths

    async def copy_objects(self, entries: list[ObjectEntry], added: list[str]) -> None:
        """Copy the objects the images bucket lacks; `added` collects what was written. On
        the first failure nothing new starts, and this returns only after every copy under
        way has finished, so `added` is complete for the rollback."""
        source, target = self.settings.backup_bucket, self.settings.images_bucket
        stop = threading.Event()

        def one(entry: ObjectEntry) -> None:
            if stop.is_set():
                return
            try:
                fetched = objects.fetch(self.s3, source, layout.blob_key(entry.sha256))
                if fetched is None:
                    raise RestoreRefused(
                        f"blob {entry.sha256} ({entry.key}) is missing from backup"
                    )
                if fetched.sha256 != entry.sha256:
                    raise RestoreRefused(f"blob {entry.sha256} ({entry.key}) is corrupt in backup")
                objects.put_checked(
                    self.s3,
                    target,
                    entry.key,
                    fetched.data,
                    fetched.sha256,
                    entry.content_type,
                    entry.metadata,
                )
            except BaseException:
                stop.set()
                raise
            added.append(entry.key)

        missing = await self._missing_objects(entries)
        outcomes = await asyncio.gather(
            *(self.copier.run(one, entry) for entry in missing), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def remove_objects(self, keys: list[str]) -> None:
        bucket = self.settings.images_bucket
        async with asyncio.TaskGroup() as group:
            for key in keys:
                group.create_task(self.copier.run(objects.remove, self.s3, bucket, key))

    async def load(
        self, manifest: Manifest, paths: dict[str, Path], record: RestoreRecord, phase: Phase
    ) -> None:
        """Replace every table's rows in one transaction, health-checked before commit."""
        conn = await db.connect(self.settings, "loupe-backup-restore")
        try:
            async with conn.transaction():
                tables = await database.describe(conn)
                verdict = check(manifest, tables, await database.revisions(conn))
                if verdict.status == "incompatible":
                    raise RestoreRefused("; ".join(verdict.reasons))
                targets = [t for t in tables if t.name != ALEMBIC]
                names = ", ".join(quote(t.name) for t in targets)
                await conn.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
                if record.mode == "empty":
                    counts = await database.user_rows(conn, targets)
                    occupied = sorted(n for n, c in counts.items() if c)
                    if occupied:
                        raise RestoreRefused(
                            "the installation is not empty: " + ", ".join(occupied)
                        )
                await phase("loading")
                await conn.execute(f"TRUNCATE {names}")
                await self._create_partitions(conn, manifest)
                for table in targets:
                    path = paths.get(table.name)
                    if path is not None:
                        await conn.copy_to_table(
                            table.name,
                            source=path,
                            columns=await asyncio.to_thread(csv_columns, path),
                            format="csv",
                            header=True,
                        )
                    await _reset_sequences(conn, table)
                await phase("health-check")
                record.rows = await self._health_check(conn, manifest, targets)
                if self.settings.restore_hold_before_commit_s > 0:
                    await phase("holding")
                    await asyncio.sleep(self.settings.restore_hold_before_commit_s)
                await phase("committing")
        finally:
            await conn.close()

    async def _create_partitions(self, conn: asyncpg.Connection, manifest: Manifest) -> None:
        for table in manifest.tables:
            for partition in table.partitions:
                exists = await conn.fetchval("SELECT to_regclass($1)", quote(partition.name))
                if exists is None:
                    await conn.execute(
                        f"CREATE TABLE {quote(partition.name)} PARTITION OF "
                        f"{quote(table.table)} {Partition.render(partition.bound)}"
                    )

    async def _health_check(
        self, conn: asyncpg.Connection, manifest: Manifest, tables: list[Table]
    ) -> dict[str, int]:
        counts = await database.row_counts(conn, tables)
        for backed in manifest.tables:
            if backed.table != ALEMBIC and counts.get(backed.table) != backed.rows:
                raise HealthCheckFailed(
                    f"{backed.table}: {counts.get(backed.table)} rows loaded, "
                    f"{backed.rows} in the backup"
                )
        referenced: set[str] = set()
        if await conn.fetchval("SELECT to_regclass('public.image_records')") is not None:
            rows = await conn.fetch("SELECT sha256 FROM image_records WHERE deleted_at IS NULL")
            referenced = {r["sha256"].strip() for r in rows}
        if referenced:
            present = await asyncio.to_thread(image_blobs, self.s3, self.settings.images_bucket)
            lacking = sorted(s for s in referenced if layout.blob_key(s) not in present)
            if lacking:
                raise HealthCheckFailed(
                    f"{len(lacking)} image records have no blob, e.g. {lacking[0]}"
                )
        return counts


async def _reset_sequences(conn: asyncpg.Connection, table: Table) -> None:
    for column in table.identity_columns:
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence($1, $2), "  # noqa: S608 (names quoted)
            f"COALESCE((SELECT max({quote(column)}) FROM {quote(table.name)}), 0) + 1, false)",
            quote(table.name),
            column,
        )


def new_workdir(settings: BackupSettings) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="loupe-restore-", dir=settings.work_dir or None)
