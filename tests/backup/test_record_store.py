"""`RecordStore.all()` and `restores()` read a record again only when its ETag changed (the
sweep, the scheduler, a new backup and the list all ask for every record): on the session's
object store, with a second store standing for another replica."""

import asyncio

from minio import Minio

from loupe_backup.backups import layout
from loupe_backup.backups.records import BackupRecord, RestoreRecord
from loupe_backup.backups.store import RecordStore


class CountingStore(RecordStore):
    """The real store, counting the records it reads."""

    def __init__(self, s3: Minio, bucket: str) -> None:
        super().__init__(s3, bucket)
        self.reads = 0
        self.restore_reads = 0

    async def get(self, backup_id: str) -> BackupRecord | None:
        self.reads += 1
        return await super().get(backup_id)

    async def get_restore(self, restore_id: str) -> RestoreRecord | None:
        self.restore_reads += 1
        return await super().get_restore(restore_id)


def test_all_reads_only_the_records_that_changed(bucket: tuple[Minio, str]) -> None:
    s3, name = bucket

    async def run() -> None:
        store, other = CountingStore(s3, name), RecordStore(s3, name)
        records = [
            BackupRecord(id=f"20261205T10000{n}Z-store{n}", kind="full", status=status)
            for n, status in enumerate(("running", "completed", "failed"))
        ]
        for record in records:
            await other.save(record)

        first = await store.all()
        assert [r.id for r in first] == [r.id for r in records]
        assert store.reads == 3
        first[0].status = "failed"  # what a caller does to its copy stays its own

        again = await store.all()
        assert store.reads == 3  # nothing changed: nothing read
        assert [r.status for r in again] == ["running", "completed", "failed"]

        # Another replica finishes the running set: its record is read again, and only it.
        records[0].status = "completed"
        await other.save(records[0])
        changed = await store.all()
        assert store.reads == 4
        assert [r.status for r in changed] == ["completed", "completed", "failed"]

        # A deleted set is gone from the answer (and from what is kept).
        s3.remove_object(name, layout.state_key(records[1].id))
        left = await store.all()
        assert [r.id for r in left] == [records[0].id, records[2].id]
        assert store.reads == 4

    asyncio.run(run())


def test_restores_reads_only_the_restore_records_that_changed(bucket: tuple[Minio, str]) -> None:
    s3, name = bucket

    async def run() -> None:
        store, other = CountingStore(s3, name), RecordStore(s3, name)
        first, second = (
            RestoreRecord(id=f"restore{n}", backup_id="20261205T100000Z-store0", mode="empty")
            for n in range(2)
        )
        for record in (first, second):
            await other.save_restore(record)
        assert [r.id for r in await store.restores()] == ["restore0", "restore1"]
        assert store.restore_reads == 2
        await store.restores()
        assert store.restore_reads == 2
        second.status = "completed"
        await other.save_restore(second)
        assert [r.status for r in await store.restores()] == ["running", "completed"]
        assert store.restore_reads == 3
        s3.remove_object(name, layout.restore_key("restore0"))
        assert [r.id for r in await store.restores()] == ["restore1"]
        assert store.restore_reads == 3

    asyncio.run(run())
