"""An incremental backup reads its parent's manifest from the backup bucket only when this
replica did not write it: the replica that completed the parent keeps that manifest (under
its id and checksum) and compares with it, where reading and parsing it again was a fifth of
an unchanged incremental's work. Two backup services in this process, on one installation:
the store under each counts the manifests it reads."""

import asyncio
import hashlib
import io
import os

import pytest
from prometheus_client import CollectorRegistry

from loupe_backup.backups import objects
from loupe_backup.backups.manifest import Include, Kind, Manifest
from loupe_backup.backups.records import BackupRecord
from loupe_backup.backups.service import BackupService
from loupe_backup.backups.store import RecordStore
from loupe_backup.settings import BackupSettings
from loupe_shared.contracts.streams import TOKENS_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit import lease
from loupe_shared.kit.lease import Leases
from loupe_shared.kit.nats import connect
from tests.backup.conftest import MakeInstallation

OBJECTS = 12


class CountingStore(RecordStore):
    def __init__(self, store: RecordStore) -> None:
        super().__init__(store.s3, store.bucket)
        self.manifests_read = 0

    async def manifest(self, record: BackupRecord) -> Manifest:
        self.manifests_read += 1
        return await super().manifest(record)


def test_the_replica_that_wrote_the_parent_reads_no_manifest(
    make_installation: MakeInstallation, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = make_installation()
    for name, value in inst.env("backup").items():
        monkeypatch.setenv(name, value)
    settings = BackupSettings()
    s3 = objects.client(settings)
    for n in range(OBJECTS):
        data = os.urandom(1024) + bytes([n])
        sha = hashlib.sha256(data).hexdigest()
        s3.put_object(inst.images_bucket, f"blobs/{sha[:2]}/{sha}", io.BytesIO(data), len(data))

    async def run() -> None:
        nc = await connect(settings, "tests-parent-manifest")
        js = nc.jetstream()
        tokens = stream_name(TOKENS_BUCKET, settings.namespace)

        def replica() -> tuple[BackupService, CountingStore]:
            leases = Leases(js, lease.bucket_for(tokens), service="backup", ttl_s=5)
            svc = BackupService(settings, s3, nc, js, CollectorRegistry(), leases)
            svc.store = CountingStore(svc.store)
            return svc, svc.store

        async def made(svc: BackupService, kind: Kind) -> BackupRecord:
            record = await svc.create(kind, Include(), "tests")
            done = await svc.wait(record.id)
            assert done.status == "completed", done.error
            return done

        first, first_store = replica()
        second, second_store = replica()
        try:
            full = await made(first, "full")
            incremental = await made(first, "incremental")
            assert incremental.parent_id == full.id
            assert first_store.manifests_read == 0
            # Every blob compared as unchanged with the kept manifest: only the data files sent.
            blobs_copied = full.progress.objects_copied - incremental.progress.objects_copied
            assert blobs_copied == OBJECTS

            # Another replica never wrote that set: it reads the manifest (once).
            other = await made(second, "incremental")
            assert other.parent_id == incremental.id
            assert second_store.manifests_read == 1
            assert other.progress.objects_copied == incremental.progress.objects_copied
            # Its own set is then kept by it, not by the first replica.
            again = await made(first, "incremental")
            assert again.parent_id == other.id
            assert first_store.manifests_read == 1
        finally:
            await first.close()
            await second.close()
            await nc.close()

    asyncio.run(run())
