"""The metrics the rules and dashboards need, scraped from the running services."""

import asyncio
import shutil
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from loupe_images.capacity import seaweedfs_disks
from loupe_shared.kit.auth import Role
from loupe_stack.config import SERVICES
from loupe_stack.stack import Stack
from tests.conftest import TokenMaker, auth
from tests.legacy.helpers import legacy_program
from tests.monitoring.rules import rules, scraped_names
from tests.monitoring.scraping import exported, samples, scrape, value
from tests.support import eventually

# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up"}
READINESS = {
    "catalog": {"database", "nats", "tokens"},
    "images": {"object_store", "nats", "tokens"},
    "backup": {"database", "object_store", "nats", "tokens"},
    "inspect": {"object_store", "nats", "tokens", "consumer"},
}


def test_every_metric_a_rule_names_is_exported(platform: Stack, admin_token: str) -> None:
    offered = set().union(*(exported(scrape(platform, s, admin_token)) for s in SERVICES))
    named = set().union(*(scraped_names(rule["expr"]) for rule in rules()))
    missing = named - offered - PROMETHEUS_OWN
    assert not missing, f"rules name metrics no service exports: {sorted(missing)}"


@pytest.mark.parametrize("service", SERVICES)
def test_readiness_is_exported_per_check(platform: Stack, admin_token: str, service: str) -> None:
    text = scrape(platform, service, admin_token)
    checks = {s.labels["check"]: s.value for s in samples(text, "readiness_check_ok")}
    assert checks == dict.fromkeys(READINESS[service], 1.0)


@pytest.mark.parametrize("service", SERVICES)
def test_scrape_time_measurements_succeed(platform: Stack, admin_token: str, service: str) -> None:
    scrape(platform, service, admin_token)
    text = scrape(platform, service, admin_token)
    failed = {s.labels["measure"]: s.value for s in samples(text, "metrics_scrape_failures_total")}
    assert "readiness" in failed
    assert not any(failed.values()), f"{service}: measurements failed: {failed}"


def test_results_per_line_and_the_ingest_backlog(
    platform: Stack, admin_token: str, gateway: httpx.Client, make_token: TokenMaker
) -> None:
    line = f"metrics-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()
    verdicts = ["pass", "pass", "pass", "fail"]
    body = {
        "results": [
            {"result_id": str(uuid.uuid4()), "line_id": line, "verdict": v, "captured_at": now}
            for v in verdicts
        ]
    }
    sent = gateway.post("/api/results", json=body, headers=auth(make_token(Role.LINE, line)))
    assert sent.status_code == 202, sent.text

    def counted() -> bool:
        text = scrape(platform, "catalog", admin_token)
        return (
            value(text, "results_line_ingested_total", line=line, verdict="pass") == 3
            and value(text, "results_line_ingested_total", line=line, verdict="fail") == 1
        )

    eventually("the line's results counted by verdict", counted)
    # Once ingested, the consumer has nothing of this batch left.
    eventually(
        "the ingest backlog drained",
        lambda: (
            value(scrape(platform, "catalog", admin_token), "results_ingest_pending_messages") == 0
        ),
    )


def test_outbox_backlog_is_measured_and_drains(
    platform: Stack, admin_token: str, gateway: httpx.Client
) -> None:
    text = scrape(platform, "catalog", admin_token)
    assert value(text, "outbox_pending_events") is not None
    assert value(text, "outbox_oldest_pending_age_seconds") is not None

    def relayed() -> bool:
        text = scrape(platform, "catalog", admin_token)
        return (
            value(text, "outbox_pending_events") == 0
            and value(text, "outbox_oldest_pending_age_seconds") == 0
        )

    eventually("the outbox relayed", relayed)


def test_legacy_migration_outcomes_are_counted(
    platform: Stack, admin_token: str, gateway: httpx.Client, make_token: TokenMaker
) -> None:
    def counts() -> dict[str, float]:
        text = scrape(platform, "catalog", admin_token)
        found = samples(text, "legacy_migration_items_total")
        return {s.labels["outcome"]: s.value for s in found}

    before = counts()
    assert set(before) >= {"imported", "failed", "invalid"}, before
    export = [legacy_program(), legacy_program(), {"id": "broken", "config": "not a program"}]
    answer = gateway.post(
        "/api/migrations/legacy",
        params={"dry_run": "false"},
        json=export,
        headers=auth(make_token(Role.ENGINEER, "metrics-migrator")),
        timeout=120,
    )
    assert answer.status_code == 201, answer.text
    reported: dict[str, int] = {}
    for item in answer.json()["items"]:
        reported[item["outcome"]] = reported.get(item["outcome"], 0) + 1
    assert reported.get("imported") == 2, reported
    after = counts()
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == reported


def test_stored_bytes_and_objects_by_kind(platform: Stack, admin_token: str) -> None:
    text = scrape(platform, "catalog", admin_token)
    for name in ("images_stored_bytes", "images_stored_objects"):
        kinds = {s.labels["kind"] for s in samples(text, name)}
        assert kinds == {"master", "capture", "overlay", "thumbnail"}, (name, kinds)


def test_seaweedfs_admin_interface_reports_the_disks(platform: Stack) -> None:
    if platform.external:
        pytest.skip("SeaweedFS runs only in the embedded stack")
    master = f"http://127.0.0.1:{platform.settings.weed_master_port}"

    async def ask() -> tuple[int, int]:
        async with httpx.AsyncClient(timeout=5) as client:
            return await seaweedfs_disks(client, master)

    total, free = asyncio.run(ask())
    disk = shutil.disk_usage(platform.data_dir / "seaweedfs")
    assert total == disk.total
    assert 0 < free <= total


@pytest.mark.slow
def test_backup_success_size_duration_and_verification(platform: Stack, admin_token: str) -> None:
    admin = auth(admin_token)
    with httpx.Client(base_url=platform.service_url("backup"), timeout=60) as client:
        before = scrape(platform, "backup", admin_token)
        started = client.post("/api/backups", json={"kind": "full"}, headers=admin)
        assert started.status_code == 202, started.text
        backup_id = started.json()["id"]
        record: dict[str, object] = {}

        def finished() -> bool:
            record.update(client.get(f"/api/backups/{backup_id}", headers=admin).json())
            return record["status"] != "running"

        eventually("the backup finished", finished, timeout_s=120)
        assert record["status"] == "completed", record
        verified = client.post(f"/api/backups/{backup_id}/verify", headers=admin)
        assert verified.status_code == 200, verified.text
        assert verified.json()["ok"] is True
    after = scrape(platform, "backup", admin_token)
    finished_at = datetime.fromisoformat(str(record["finished_at"])).timestamp()
    assert value(after, "backup_last_success_timestamp_seconds", kind="full") == finished_at
    progress = record["progress"]
    assert isinstance(progress, dict)
    assert value(after, "backup_last_success_size_bytes", kind="full") == progress["bytes_total"]

    def grew(text_before: str, name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(text_before, name, **labels) or 0)

    assert grew(before, "backup_duration_seconds_count", kind="full", status="completed") == 1
    assert grew(before, "backup_verifications_total", outcome="ok") == 1
    assert grew(before, "backup_verifications_total", outcome="failed") == 0
