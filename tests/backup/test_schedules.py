"""Schedules: cron timing, retention (last N, daily, weekly), and a failed scheduled backup
that is listed, announced and counted — never silent."""

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loupe_backup.schedules.cron import Cron, CronError
from loupe_backup.schedules.retention import Retention, kept
from loupe_shared.kit.auth import Role
from tests.backup.conftest import (
    SNAPSHOT_WAITING,
    Installation,
    events,
    table_locked,
    waiting_on_lock,
)
from tests.support import eventually


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", "2026-11-23 10:07:30", "2026-11-23 10:15:00"),
        ("0 3 * * *", "2026-11-23 03:00:00", "2026-11-24 03:00:00"),
        ("30 2 * * 1", "2026-11-23 10:00:00", "2026-11-30 02:30:00"),  # Mondays
        ("0 0 1,15 * *", "2026-11-23 10:00:00", "2026-12-01 00:00:00"),
        ("0 12 31 * *", "2026-11-01 00:00:00", "2026-12-31 12:00:00"),
        ("0 0 * * 7", "2026-11-23 10:00:00", "2026-11-29 00:00:00"),  # 7 is Sunday
    ],
)
def test_cron_next_run(expression: str, after: str, expected: str) -> None:
    assert Cron.parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    "expression", ["* * * *", "60 * * * *", "*/0 * * * *", "a * * * *", "0 0 30 2 *"]
)
def test_cron_refuses_bad_expressions(expression: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(expression).next_after(at("2026-11-23 00:00:00"))


def test_retention_keeps_last_daily_and_weekly() -> None:
    start = at("2026-11-23 23:00:00")
    # Four sets a day for 30 days, newest first.
    sets = [(f"s{i}", start - timedelta(hours=6 * i)) for i in range(120)]
    keep = kept(sets, Retention(keep_last=3, keep_daily=4, keep_weekly=3))
    # Monday 23rd: s0-s3; Sunday 22nd: s4-s7; ...; Sunday 15th: s32-s35.
    last, daily, weekly = {"s0", "s1", "s2"}, {"s0", "s4", "s8", "s12"}, {"s0", "s4", "s32"}
    assert keep == last | daily | weekly


def _run(inst: Installation, schedule_id: str) -> dict[str, Any]:
    with inst.client("backup") as client:
        answer = client.post(f"/api/backup-schedules/{schedule_id}/run", headers=inst.admin)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_schedule_with_retention_and_a_failed_run(source: Installation) -> None:
    operator = source.token(Role.OPERATOR)
    body = {
        "name": "nightly",
        "cron": "0 2 * * *",
        "kind": "incremental",
        "retention": {"keep_last": 2},
    }
    with source.client("backup") as client:
        assert client.post("/api/backup-schedules", json=body, headers=operator).status_code == 403
        bad = client.post(
            "/api/backup-schedules", json={**body, "cron": "0 25 * * *"}, headers=source.admin
        )
        assert bad.status_code == 422
        assert "cron" in bad.json()["detail"]
        created = client.post("/api/backup-schedules", json=body, headers=source.admin)
        assert created.status_code == 201, created.text
        schedule = created.json()
        assert schedule["next_run_at"].startswith(
            (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        ) or schedule["next_run_at"].startswith(datetime.now(UTC).date().isoformat())
        assert client.get("/api/backup-schedules", headers=operator).status_code == 200

    made = [_run(source, schedule["id"])["last_backup_id"] for _ in range(3)]
    with source.client("backup") as client:
        items = client.get("/api/backups", headers=source.admin).json()["items"]
    mine = [i["id"] for i in items if i["schedule_id"] == schedule["id"]]
    assert mine == [made[2], made[1]]  # the oldest was deleted by retention

    # A scheduled backup that fails is listed, announced and counted.
    outcome: dict[str, Any] = {}
    with table_locked(source, "results"):
        worker = threading.Thread(target=lambda: outcome.update(_run(source, schedule["id"])))
        worker.start()
        eventually("the snapshot waits on the lock", lambda: waiting_on_lock(source))
        source.sql(f"SELECT pg_terminate_backend(pid) {SNAPSHOT_WAITING.format(source.database)}")
        worker.join(60)
    assert outcome["last_status"] == "failed"
    assert outcome["failures"] == 1
    failed_id = outcome["last_backup_id"]
    with source.client("backup") as client:
        listed = client.get("/api/backups", headers=source.admin).json()["items"]
        metrics = client.get("/metrics", headers=source.admin).text
    failed = next(i for i in listed if i["id"] == failed_id)
    assert failed["status"] == "failed"
    assert failed["schedule_id"] == schedule["id"]
    announced = [e for e in events(source, "backup.failed") if e["backup_id"] == failed_id]
    assert announced[0]["schedule_id"] == schedule["id"]
    assert 'backup_sets_total{kind="incremental",scheduled="true",status="failed"} 1.0' in metrics
    # Retention never counts a failed set, and never deletes the completed ones for it.
    assert {made[2], made[1]} <= {i["id"] for i in listed}
