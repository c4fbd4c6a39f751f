"""Backup-set and restore records in the backup bucket (async wrappers over threads)."""

import asyncio
import hashlib

from minio import Minio

from loupe_backup.backups import layout, objects
from loupe_backup.backups.manifest import Manifest, parse
from loupe_backup.backups.records import BackupRecord, RestoreRecord, now


class CorruptManifest(Exception):
    pass


class RecordStore:
    def __init__(self, s3: Minio, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        # Each set's record as last read, by its key, with the ETag it was listed with: `all()`
        # reads again only what changed since (or is new). The sweep, the scheduler, a new
        # backup and the list ask for every record; a set's record no longer changes once the
        # set finished, so without this each of them read the whole history every time.
        self._read: dict[str, tuple[str, BackupRecord]] = {}

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
        """Every set's record, oldest first. One listing; a record whose ETag is the one it
        was read with is answered from what was read (a copy), any other is read."""

        def states() -> list[objects.Listed]:
            return [
                o
                for o in objects.listing(self.s3, self.bucket, layout.SETS)
                if o.key.endswith("/state.json")
            ]

        found = await asyncio.to_thread(states)

        async def one(item: objects.Listed) -> BackupRecord | None:
            kept = self._read.get(item.key)
            if kept is not None and kept[0] == item.etag:
                return kept[1].model_copy(deep=True)
            record = await self.get(item.key.removeprefix(layout.SETS).split("/")[0])
            if record is not None:
                # Kept under the ETag listed: a write between the listing and the read only
                # makes the next `all()` read it again.
                self._read[item.key] = (item.etag, record.model_copy(deep=True))
            return record

        records = await asyncio.gather(*(one(item) for item in found))
        listed = {item.key for item in found}
        for key in [k for k in self._read if k not in listed]:
            del self._read[key]  # the set was deleted
        return sorted((r for r in records if r is not None), key=lambda r: r.created_at)

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
        def keys() -> list[str]:
            return [o.key for o in objects.listing(self.s3, self.bucket, layout.RESTORES)]

        found = await asyncio.to_thread(keys)
        records = await asyncio.gather(
            *(
                self.get_restore(k.removeprefix(layout.RESTORES).removesuffix(".json"))
                for k in found
            )
        )
        return sorted((r for r in records if r is not None), key=lambda r: r.started_at)
