"""Two backup replicas on one installation: a due schedule runs on one of them; the other
shows its backup as running while the holder lives; when the holder is killed mid-backup the
other marks the set failed once its lease expired, and runs the schedule the next time."""

import asyncio
import io
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from loupe_backup.schedules.scheduler import schedule_lease
from loupe_shared.contracts.streams import LEASES_BUCKET
from loupe_shared.contracts.subjects import stream_name
from loupe_shared.kit.nats import connect
from tests.backup.conftest import (
    MakeInstallation,
    backup,
    finished_restore,
    second_replica,
    start_restore,
    table_locked,
    waiting_on_lock,
)
from tests.support import eventually

LEASE_TTL_S = 2.0
# The job's lease expires a TTL after its holder died; the sweeper looks every third of one.
TAKEOVER_BOUND_S = 3 * LEASE_TTL_S + 10


def lease_record(nats: Any, namespace: str, name: str) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        nc = await connect(nats, "tests")
        try:
            kv = await nc.jetstream().key_value(stream_name(LEASES_BUCKET, namespace))
            try:
                entry = await kv.get(name)
            except Exception:
                return None
            found: dict[str, Any] = orjson.loads(entry.value or b"null")
            return found
        finally:
            await nc.drain()

    return asyncio.run(read())


@pytest.mark.slow
def test_one_replica_runs_a_schedule_and_the_other_fails_its_set_when_it_dies(
    make_installation: MakeInstallation,
) -> None:
    inst = make_installation()
    settings = {"LEASE_TTL_S": str(LEASE_TTL_S), "SCHEDULE_TICK_S": "0.2"}
    first = inst.start("backup", **settings)
    with second_replica(inst, **settings) as (second, other_url):
        replicas = {first.pid: first, second.pid: second}
        urls = {first.pid: inst.url("backup"), second.pid: other_url}
        host = socket.gethostname()

        def client(pid: int | None) -> httpx.Client:
            return httpx.Client(base_url=urls[pid], timeout=30)

        with client(first.pid) as api:
            created = api.post(
                "/api/backup-schedules",
                # Never due by itself: the test makes it due.
                json={"name": "drill", "cron": "0 3 1 1 *", "kind": "full"},
                headers=inst.admin,
            )
        assert created.status_code == 201, created.text
        schedule_id = created.json()["id"]

        def make_due() -> None:
            key = f"schedules/{schedule_id}.json"
            stored = orjson.loads(inst.s3.get_object(inst.backup_bucket, key).read())
            stored["next_run_at"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
            data = orjson.dumps(stored)
            inst.s3.put_object(inst.backup_bucket, key, io.BytesIO(data), len(data))

        def sets(pid: int | None) -> list[dict[str, Any]]:
            with client(pid) as api:
                items = api.get("/api/backups", headers=inst.admin).json()["items"]
            return [i for i in items if i["schedule_id"] == schedule_id]

        def schedule(pid: int | None) -> dict[str, Any]:
            with client(pid) as api:
                found: dict[str, Any] = api.get(
                    f"/api/backup-schedules/{schedule_id}", headers=inst.admin
                ).json()
            return found

        with table_locked(inst, "results"):
            make_due()
            eventually("the scheduled backup waits on the lock", lambda: waiting_on_lock(inst))
            eventually(
                "the schedule saved its run", lambda: bool(schedule(first.pid)["last_backup_id"])
            )
            holder = lease_record(inst.nats, inst.namespace, schedule_lease(schedule_id))
            assert holder is not None
            holder_pid = int(holder["instance"].removeprefix(f"{host}:"))
            other_pid = next(pid for pid in replicas if pid != holder_pid)
            # One set, seen running from both replicas while its holder lives.
            for pid in (holder_pid, other_pid):
                listed = sets(pid)
                assert len(listed) == 1
                assert listed[0]["status"] == "running"
            running_id = listed[0]["id"]
            job = lease_record(inst.nats, inst.namespace, f"backup.jobs.{running_id}")
            assert job is not None
            assert job["instance"] == holder["instance"]
            # The other replica refuses to run the schedule while the holder does.
            with client(other_pid) as api:
                refused = api.post(f"/api/backup-schedules/{schedule_id}/run", headers=inst.admin)
            assert refused.status_code == 409

            killed = replicas[holder_pid]
            assert killed.popen is not None
            killed.popen.kill()
            killed.popen.wait(10)

            def failed() -> bool:
                listed = sets(other_pid)
                return listed[0]["status"] == "failed" and "interrupted" in (
                    listed[0]["error"] or ""
                )

            took = eventually("the set marked interrupted", failed, timeout_s=TAKEOVER_BOUND_S)
            print(f"interrupted set marked {took:.1f} s after its replica was killed")

        # The next scheduled run, on the replica left, is sound.
        make_due()
        eventually(
            "the next scheduled backup completes",
            lambda: any(s["status"] == "completed" for s in sets(other_pid)),
            timeout_s=60,
        )
        outcome = sets(other_pid)
        assert sorted(s["status"] for s in outcome) == ["completed", "failed"]
        eventually(
            "the schedule records its run",
            lambda: schedule(other_pid)["last_status"] == "completed",
            timeout_s=15,
        )
        assert schedule(other_pid)["last_backup_id"] != running_id


@pytest.mark.slow
def test_one_restore_at_a_time_across_replicas(make_installation: MakeInstallation) -> None:
    """A restore running on one replica refuses another on the other replica (409); once it
    finished, the other replica may restore."""
    inst = make_installation()
    settings = {"LEASE_TTL_S": str(LEASE_TTL_S)}
    inst.start("backup", restore_hold_before_commit_s="2", **settings)
    with second_replica(inst, **settings) as (_, other_url):
        taken = backup(inst)
        assert taken["status"] == "completed"
        started = start_restore(inst, taken["id"])
        assert started.status_code == 202, started.text
        with httpx.Client(base_url=other_url, timeout=30) as other:
            path = f"/api/backups/{taken['id']}/restore"
            refused = other.post(path, json={"dry_run": False}, headers=inst.admin)
            assert refused.status_code == 409, refused.text
            assert "another restore" in refused.json()["detail"]
            state = finished_restore(inst, taken["id"], started.json()["id"])
            assert state["status"] == "completed", state
            again = other.post(path, json={"dry_run": False}, headers=inst.admin)
            assert again.status_code == 202, again.text
            with inst.client("backup") as first:
                answer = first.get(
                    f"/api/backups/{taken['id']}/restores/{again.json()['id']}",
                    headers=inst.admin,
                )
            assert answer.status_code == 200
