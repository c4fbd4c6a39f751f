"""Verifying a backup set: re-hash every data file and every blob against the manifest."""

import asyncio

from minio import Minio

from loupe_backup.backups import layout, objects
from loupe_backup.backups.creator import Copier
from loupe_backup.backups.manifest import Manifest
from loupe_backup.backups.records import Verification, now

# Files of a set that the manifest does not list because they describe it.
_OWN_FILES = ("state.json", "manifest.json")


def quarantine(s3: Minio, bucket: str, key: str) -> None:
    data = objects.get_bytes(s3, bucket, key)
    if data is not None:
        objects.put(s3, bucket, f"{layout.QUARANTINE}{key}.{now():%Y%m%dT%H%M%S}", data)
    objects.remove(s3, bucket, key)


async def verify(s3: Minio, bucket: str, manifest: Manifest, copier: Copier) -> Verification:
    missing: list[str] = []
    corrupt: list[str] = []
    backup_id = manifest.backup_id

    async def check(key: str, label: str, sha256: str, size: int, blob: bool = False) -> None:
        found = await copier.run(objects.hash_stream, s3, bucket, key)
        if found is None:
            missing.append(label)
        elif found != (sha256, size):
            corrupt.append(label)
            if blob:
                # Moved aside, so the next backup copies the blob again from the images
                # bucket (which heals every set that shares it) instead of trusting it.
                await copier.run(quarantine, s3, bucket, key)

    async with asyncio.TaskGroup() as group:
        for table in manifest.tables:
            key = layout.data_key(backup_id, table.file)
            group.create_task(check(key, table.file, table.sha256, table.size))
        seen: set[str] = set()
        for entry in manifest.objects:
            if entry.sha256 in seen:
                continue
            seen.add(entry.sha256)
            key = layout.blob_key(entry.sha256)
            group.create_task(check(key, key, entry.sha256, entry.size, blob=True))

    def listed() -> list[str]:
        prefix = layout.set_prefix(backup_id)
        return [o.key.removeprefix(prefix) for o in objects.listing(s3, bucket, prefix)]

    files = {t.file for t in manifest.tables}
    extra = [
        name
        for name in await asyncio.to_thread(listed)
        if name not in files and name not in _OWN_FILES
    ]
    return Verification(
        verified_at=now(),
        ok=not (missing or corrupt or extra),
        checked_files=len(manifest.tables),
        checked_objects=len(seen),
        missing=sorted(missing),
        corrupt=sorted(corrupt),
        extra=sorted(extra),
    )
