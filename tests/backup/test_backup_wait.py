"""`GET /api/backups/{id}?wait=`: a reader waits for a running set to finish and is answered
as soon as it has — on the replica that runs the job, and on another one — or with its
progress when the time runs out, or at once when the server begins to shut down. The set is
held running by a lock on one of its tables (its snapshot waits on it)."""

import signal
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from tests.backup.conftest import (
    Installation,
    MakeInstallation,
    second_replica,
    table_locked,
    waiting_on_lock,
)
from tests.support import eventually

LEASE_TTL_S = 2.0


def _start_held(inst: Installation) -> str:
    with inst.client("backup") as api:
        started = api.post("/api/backups", json={"kind": "full"}, headers=inst.admin)
    assert started.status_code == 202, started.text
    eventually("the backup's snapshot waits on the lock", lambda: waiting_on_lock(inst))
    backup_id: str = started.json()["id"]
    return backup_id


def _waiting(
    pool: ThreadPoolExecutor, base_url: str, inst: Installation, backup_id: str, wait: float
) -> Future[httpx.Response]:
    def ask() -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as api:
            return api.get(f"/api/backups/{backup_id}", params={"wait": wait}, headers=inst.admin)

    return pool.submit(ask)


def test_a_reader_waits_until_the_set_finished(make_installation: MakeInstallation) -> None:
    inst = make_installation()
    inst.start("backup")
    with ThreadPoolExecutor(2) as pool:
        with table_locked(inst, "results"):
            backup_id = _start_held(inst)
            # The time runs out while the set is held: answered with its progress.
            with inst.client("backup") as api:
                short = api.get(
                    f"/api/backups/{backup_id}", params={"wait": 0.3}, headers=inst.admin
                )
            assert short.status_code == 200, short.text
            assert short.json()["status"] == "running"
            answer = _waiting(pool, inst.url("backup"), inst, backup_id, 30)
            with pytest.raises(TimeoutError):
                answer.result(timeout=1.5)  # still held: still waiting
        shown = answer.result(timeout=30)  # the lock is gone: the set finishes
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == "completed"
    assert shown.json()["finished_at"] is not None
    with inst.client("backup") as api:
        # A finished set, and one that is not there, are answered at once.
        done = api.get(f"/api/backups/{backup_id}", params={"wait": 30}, headers=inst.admin)
        assert done.json()["status"] == "completed"
        missing = api.get(
            "/api/backups/20260101T000000Z-nothere", params={"wait": 30}, headers=inst.admin
        )
        assert missing.status_code == 404
        for bad in ("-1", "30.5", "nan", "inf", "1e309", "soon", "", "\x00", "1\x00", "9" * 400):
            refused = api.get(f"/api/backups/{backup_id}", params={"wait": bad}, headers=inst.admin)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.slow
def test_a_reader_on_another_replica_is_answered_when_the_set_finishes_or_its_replica_dies(
    make_installation: MakeInstallation,
) -> None:
    inst = make_installation()
    settings = {"LEASE_TTL_S": str(LEASE_TTL_S)}
    first = inst.start("backup", **settings)
    with second_replica(inst, **settings) as (_, other_url), ThreadPoolExecutor(2) as pool:
        # The set finishes on the first replica: the reader on the second is answered.
        with table_locked(inst, "results"):
            backup_id = _start_held(inst)
            answer = _waiting(pool, other_url, inst, backup_id, 30)
            with pytest.raises(TimeoutError):
                answer.result(timeout=1.5)
        shown = answer.result(timeout=30)
        assert shown.status_code == 200, shown.text
        assert shown.json()["status"] == "completed"
        # The first replica dies with a set held: the reader on the second is answered
        # once the job's lease expired, with the set failed.
        with table_locked(inst, "results"):
            backup_id = _start_held(inst)
            answer = _waiting(pool, other_url, inst, backup_id, 30)
            with pytest.raises(TimeoutError):
                answer.result(timeout=1.0)
            assert first.popen is not None
            first.popen.kill()
            first.popen.wait(10)
            shown = answer.result(timeout=25)
        assert shown.status_code == 200, shown.text
        assert shown.json()["status"] == "failed"


def test_a_waiting_reader_is_answered_when_the_server_shuts_down(
    make_installation: MakeInstallation,
) -> None:
    """Without the drain hook the reader would hold the shutdown for the whole grace and
    then lose its connection; with it, it has its answer (the set still running) at once."""
    inst = make_installation()
    process = inst.start("backup", shutdown_timeout_s="60")
    with ThreadPoolExecutor(1) as pool, table_locked(inst, "results"):
        backup_id = _start_held(inst)
        answer = _waiting(pool, inst.url("backup"), inst, backup_id, 30)
        with pytest.raises(TimeoutError):
            answer.result(timeout=1.0)
        assert process.popen is not None
        process.popen.send_signal(signal.SIGTERM)
        shown = answer.result(timeout=20)
        assert shown.status_code == 200, shown.text
        assert shown.json()["id"] == backup_id
