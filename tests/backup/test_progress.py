"""A job's first phase is saved while its work begins (`ProgressReporter.begin`); every later
save of the record waits for that one, so the record in the bucket is never an older state
landed over a newer one. On the session's object store and NATS server."""

import asyncio
import json

import pytest
from minio import Minio
from nats.aio.client import Client as NATS

from loupe_backup.backups import layout
from loupe_backup.backups.progress import ProgressReporter
from loupe_backup.backups.records import BackupRecord
from loupe_backup.backups.store import RecordStore
from loupe_shared.kit.nats import connect
from loupe_shared.kit.settings import NatsSettings


class HeldStore(RecordStore):
    """The real store, whose first save waits until the test lets it go (or fails)."""

    def __init__(self, s3: Minio, bucket: str, fail_first: bool = False) -> None:
        super().__init__(s3, bucket)
        self.release = asyncio.Event()
        self.fail_first = fail_first
        self.saves: list[str] = []

    async def save(self, record: BackupRecord) -> None:
        first = not self.saves
        self.saves.append(record.progress.phase)
        if first:
            await self.release.wait()
            if self.fail_first:
                raise ConnectionError("the object store is down")
        await super().save(record)


def _stored(s3: Minio, bucket: str, record: BackupRecord) -> dict[str, object]:
    response = s3.get_object(bucket, layout.state_key(record.id))
    try:
        return dict(json.loads(response.read()))
    finally:
        response.close()
        response.release_conn()


def _reporter(store: HeldStore, nc: NATS, backup_id: str) -> tuple[BackupRecord, ProgressReporter]:
    """A record and its reporter, the first phase begun (its save held by `store`)."""
    record = BackupRecord(id=backup_id, kind="full")
    reporter = ProgressReporter(record, store, nc.jetstream(), "progress-test", 0.0)
    reporter.begin("snapshot")  # answers at once: the save is held
    return record, reporter


def test_a_later_save_waits_for_the_first_phase_saved_in_the_background(
    bucket: tuple[Minio, str], nats_settings: NatsSettings
) -> None:
    s3, name = bucket

    async def run() -> None:
        nc = await connect(nats_settings, "tests")
        try:
            store = HeldStore(s3, name)
            record, reporter = _reporter(store, nc, "20261205T100000Z-progress")
            assert store.saves == []  # not even started until the loop runs it
            later = asyncio.create_task(reporter.report("listing", force=True))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert store.saves == ["snapshot"]
            assert not later.done()  # waits for the first save
            store.release.set()
            await later
            assert store.saves == ["snapshot", "listing"]
            stored = _stored(s3, name, record)
            assert stored["progress"]["phase"] == "listing"  # type: ignore[index]
            assert "snapshot" in stored["progress"]["phase_seconds"]  # type: ignore[index]
        finally:
            await nc.close()

    asyncio.run(run())


def test_a_failed_first_save_is_raised_by_settled_and_waited_for_by_abandon(
    bucket: tuple[Minio, str], nats_settings: NatsSettings
) -> None:
    s3, name = bucket

    async def run() -> None:
        nc = await connect(nats_settings, "tests")
        try:
            for way in ("settled", "abandon"):
                store = HeldStore(s3, name, fail_first=True)
                _, reporter = _reporter(store, nc, f"20261205T100000Z-{way}")
                store.release.set()
                if way == "settled":
                    with pytest.raises(ConnectionError):
                        await reporter.settled()
                else:
                    await reporter.abandon()  # the job failed anyway; nothing raised
                await reporter.settled()  # nothing left to wait for
                assert store.saves == ["snapshot"]
        finally:
            await nc.close()

    asyncio.run(run())
