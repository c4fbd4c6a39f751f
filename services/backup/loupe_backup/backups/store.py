"""Backup-set and restore records in the backup bucket (async wrappers over threads)."""

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from minio import Minio
from pydantic import BaseModel

from loupe_backup.backups import layout, objects
from loupe_backup.backups.manifest import Manifest, parse
from loupe_backup.backups.records import BackupRecord, RestoreRecord, now


class CorruptManifest(Exception):
    pass


R = TypeVar("R", bound=BaseModel)


async def _read_changed(
    listed: list[objects.Listed],
    kept: dict[str, tuple[str, R]],
    read: Callable[[objects.Listed], Awaitable[R | None]],
) -> list[R]:
    """The records `listed`: one whose ETag is the one it was read with is answered from
    `kept` (a copy), any other is read and kept under the ETag listed (a write between the
    listing and the read only makes the next call read it again); what is no longer listed is
    forgotten."""

    async def one(item: objects.Listed) -> R | None:
        held = kept.get(item.key)
        if held is not None and held[0] == item.etag:
            return held[1].model_copy(deep=True)
        record = await read(item)
        if record is not None:
            kept[item.key] = (item.etag, record.model_copy(deep=True))
        return record

    records = await asyncio.gather(*(one(item) for item in listed))
    names = {item.key for item in listed}
    for key in [k for k in kept if k not in names]:
        del kept[key]
    return [r for r in records if r is not None]


class RecordStore:
    def __init__(self, s3: Minio, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        # Each record as last read, by its key, with the ETag it was listed with: `all()` and
        # `restores()` read again only what changed since (or is new). The sweep, the
        # scheduler, a new backup and the list ask for every record; a record no longer
        # changes once its job finished, so without this each of them read the whole history
        # every time.
        self._sets: dict[str, tuple[str, BackupRecord]] = {}
        self._restores: dict[str, tuple[str, RestoreRecord]] = {}

    async def save(self, record: BackupRecord) -> None:
        record.updated_at = now()
        data = record.model_dump_json(indent=1).encode()
        key = layout.state_key(record.id)
        await asyncio.to_thread(objects.put, self.s3, self.bucket, key, data, "application/json")

    async def get(self, backup_id: str) -> BackupRecord | None:
        key = layout.state_key(backup_id)
        data = await asyncio.to_thread(objects.get_bytes, self.s3, self.bucket, key)
        return None if data is None else BackupRecord.model_validate_json(data)

    async def all(self) -> list[BackupRecord]:
        """Every set's record, oldest first: one listing, and the records that changed."""

        def states() -> list[objects.Listed]:
            return [
                o
                for o in objects.listing(self.s3, self.bucket, layout.SETS)
                if o.key.endswith("/state.json")
            ]

        async def read(item: objects.Listed) -> BackupRecord | None:
            return await self.get(item.key.removeprefix(layout.SETS).split("/")[0])

        found = await asyncio.to_thread(states)
        records = await _read_changed(found, self._sets, read)
        return sorted(records, key=lambda r: r.created_at)

    async def put_manifest(self, manifest: Manifest) -> str:
        data = manifest.model_dump_json().encode()
        key = layout.manifest_key(manifest.backup_id)
        await asyncio.to_thread(objects.put, self.s3, self.bucket, key, data, "application/json")
        return hashlib.sha256(data).hexdigest()

    async def manifest(self, record: BackupRecord) -> Manifest:
        """The set's manifest, checked against the checksum recorded when it was written."""
        key = layout.manifest_key(record.id)
        data = await asyncio.to_thread(objects.get_bytes, self.s3, self.bucket, key)
        if data is None:
            raise CorruptManifest(f"backup {record.id} has no manifest")
        if hashlib.sha256(data).hexdigest() != record.manifest_sha256:
            raise CorruptManifest(f"the manifest of backup {record.id} does not match its checksum")
        return parse(data)

    async def save_restore(self, record: RestoreRecord) -> None:
        record.updated_at = now()
        data = record.model_dump_json(indent=1).encode()
        key = layout.restore_key(record.id)
        await asyncio.to_thread(objects.put, self.s3, self.bucket, key, data, "application/json")

    async def get_restore(self, restore_id: str) -> RestoreRecord | None:
        key = layout.restore_key(restore_id)
        data = await asyncio.to_thread(objects.get_bytes, self.s3, self.bucket, key)
        return None if data is None else RestoreRecord.model_validate_json(data)

    async def restores(self) -> list[RestoreRecord]:
        """Every restore's record, oldest first: one listing, and the records that changed."""

        def listed() -> list[objects.Listed]:
            return list(objects.listing(self.s3, self.bucket, layout.RESTORES))

        async def read(item: objects.Listed) -> RestoreRecord | None:
            return await self.get_restore(
                item.key.removeprefix(layout.RESTORES).removesuffix(".json")
            )

        found = await asyncio.to_thread(listed)
        records = await _read_changed(found, self._restores, read)
        return sorted(records, key=lambda r: r.started_at)
