"""A backup while the backup process holding its lease dies: the other process marks the set
failed once the lease expired, and the next backup, taken by whichever process, is sound."""

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
from nats.js.errors import KeyNotFoundError

from loupe_backup.backups.service import SNAPSHOT_CONNECTION, job_lease
from loupe_shared.contracts.streams import LEASES_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.lease import LeaseRecord
from loupe_shared.kit.nats import connect
from loupe_stack.processes import ManagedProcess
from loupe_stack.stack import Stack
from tests.conftest import auth
from tests.support import eventually

SNAPSHOT_WAITING = (
    "SELECT count(*) FROM pg_stat_activity "  # noqa: S608 (a constant)
    f"WHERE application_name = '{SNAPSHOT_CONNECTION}' AND wait_event_type = 'Lock'"
)


@contextmanager
def _results_locked(stack: Stack) -> Iterator[psycopg.Connection]:
    """An exclusive lock on the results table: a backup's snapshot waits on it."""
    e = stack.endpoints
    with psycopg.connect(
        host=e.pg_host, port=e.pg_port, user=e.pg_user, password=e.pg_password, dbname="loupe"
    ) as conn:
        conn.execute("LOCK TABLE results IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            conn.rollback()


def _snapshot_waiting(stack: Stack) -> bool:
    e = stack.endpoints
    with psycopg.connect(
        host=e.pg_host, port=e.pg_port, user=e.pg_user, password=e.pg_password, dbname="loupe"
    ) as conn:
        row = conn.execute(SNAPSHOT_WAITING).fetchone()
    return bool(row and row[0])


async def _job_holder(stack: Stack, backup_id: str) -> LeaseRecord | None:
    nc = await connect(stack.endpoints.nats(), "tests-cluster")
    try:
        kv = await nc.jetstream().key_value(stream_name(LEASES_BUCKET, stack.namespace))
        try:  # the job's own lease; not there yet until the backup process has taken it
            entry = await kv.get(job_lease(backup_id))
        except KeyNotFoundError:
            return None
        return LeaseRecord.model_validate_json(entry.value or b"")
    finally:
        await nc.close()


def _holder_process(stack: Stack, backup_id: str) -> ManagedProcess | None:
    record = asyncio.run(_job_holder(stack, backup_id))
    if record is None:
        return None
    pid = int(record.instance.rsplit(":", 1)[1])
    return next((p for p in stack.replicas["backup"] if p.pid == pid), None)


def test_a_backup_whose_process_dies_is_failed_and_the_next_is_sound(cluster: Stack) -> None:
    admin = auth(cluster.admin_token)
    with httpx.Client(base_url=cluster.gateway_url, timeout=60) as client:
        with _results_locked(cluster):
            started = client.post("/api/backups", json={}, headers=admin)
            assert started.status_code == 202, started.text
            killed_id = started.json()["id"]
            eventually("the snapshot waits on the lock", lambda: _snapshot_waiting(cluster), 60)
            holder: list[ManagedProcess] = []

            def found() -> bool:
                process = _holder_process(cluster, killed_id)
                holder[:] = [process] if process is not None else []
                return bool(holder)

            eventually("the job's lease holder", found, timeout_s=30)
            cluster.kill(holder[0])
            killed_at = time.monotonic()

        def marked() -> bool:
            state = client.get(f"/api/backups/{killed_id}", headers=admin).json()
            return bool(state["status"] == "failed" and state["error"])

        # By the other process, once the dead one's lease on the job expired.
        eventually("the set marked failed", marked, timeout_s=90)
        marked_s = time.monotonic() - killed_at
        state = client.get(f"/api/backups/{killed_id}", headers=admin).json()
        assert "interrupted" in state["error"], state
        refused = client.post(
            f"/api/backups/{killed_id}/restore", json={"dry_run": True}, headers=admin
        )
        assert refused.status_code == 409, refused.text

        # The next one, while the dead process is still down: the other takes it.
        again = client.post("/api/backups", json={}, headers=admin)
        assert again.status_code == 202, again.text
        next_id = again.json()["id"]

        def completed() -> bool:
            status = client.get(f"/api/backups/{next_id}", headers=admin).json()["status"]
            assert status != "failed"
            return bool(status == "completed")

        eventually("the next backup completed", completed, timeout_s=120)
        report = client.post(f"/api/backups/{next_id}/verify", headers=admin)
        assert report.status_code == 200, report.text
        assert report.json()["ok"] is True, report.json()
        cluster.revive(holder[0])
        cluster.wait_service_ready("backup", cluster.replicas["backup"].index(holder[0]) + 1)
    print(
        f"\ncluster backup: the set of the killed process marked failed {marked_s:.1f} s after "
        "the kill; the next set completed and verified"
    )
