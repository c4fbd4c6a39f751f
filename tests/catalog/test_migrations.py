"""Migrations are the only way the schema changes: up from empty, down to base, up again, on
real PostgreSQL; the service refuses a schema it does not match."""

import subprocess
import sys

from loupe_catalog import migrations
from loupe_stack.processes import free_port
from loupe_stack.stack import Stack
from tests.databases import sql


def _migrate(platform: Stack, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**platform.service_env("catalog"), "CATALOG_DB_NAME": database}
    return subprocess.run(
        [sys.executable, "-m", "loupe_catalog", "migrate", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _revision(platform: Stack, database: str) -> str | None:
    exists = sql(platform, database, "SELECT to_regclass('alembic_version') AS t")[0]["t"]
    if exists is None:
        return None
    rows = sql(platform, database, "SELECT version_num FROM alembic_version")
    return rows[0]["version_num"] if rows else None


def _tables(platform: Stack, database: str) -> set[str]:
    rows = sql(
        platform,
        database,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    return {r["table_name"] for r in rows} - {"alembic_version"}


def test_upgrade_downgrade_upgrade(platform: Stack, scratch_database: str) -> None:
    head = migrations.head_revision()
    assert _migrate(platform, scratch_database).returncode == 0
    assert _revision(platform, scratch_database) == head
    tables_at_head = _tables(platform, scratch_database)

    down = _migrate(platform, scratch_database, "--down-to", "base")
    assert down.returncode == 0, down.stderr
    assert _revision(platform, scratch_database) is None
    assert _tables(platform, scratch_database) == set()

    assert _migrate(platform, scratch_database).returncode == 0
    assert _revision(platform, scratch_database) == head
    assert _tables(platform, scratch_database) == tables_at_head


def test_every_revision_downgrades_to_its_parent(platform: Stack, scratch_database: str) -> None:
    script = migrations.script_directory()
    chain = list(reversed(list(script.walk_revisions())))
    assert _migrate(platform, scratch_database).returncode == 0
    for revision in reversed(chain[:-1]):
        done = _migrate(platform, scratch_database, "--down-to", revision.revision)
        assert done.returncode == 0, done.stderr
        assert _revision(platform, scratch_database) == revision.revision


def test_an_unknown_target_revision_is_refused(platform: Stack, scratch_database: str) -> None:
    done = _migrate(platform, scratch_database, "--down-to", "nope")
    assert done.returncode == 2
    assert "unknown_revision" in done.stdout


def _start_catalog(platform: Stack, database: str) -> subprocess.CompletedProcess[str]:
    env = {
        **platform.service_env("catalog"),
        "CATALOG_DB_NAME": database,
        "CATALOG_PORT": str(free_port()),
    }
    return subprocess.run(
        [sys.executable, "-m", "loupe_catalog"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_service_refuses_a_schema_newer_than_its_code(
    platform: Stack, scratch_database: str
) -> None:
    assert _migrate(platform, scratch_database).returncode == 0
    sql(
        platform,
        scratch_database,
        "UPDATE alembic_version SET version_num = '9999_from_the_future'",
    )
    started = _start_catalog(platform, scratch_database)
    assert started.returncode != 0
    assert "newer than this code" in started.stdout


def test_service_refuses_a_schema_with_pending_migrations(
    platform: Stack, scratch_database: str
) -> None:
    started = _start_catalog(platform, scratch_database)
    assert started.returncode != 0
    assert "python -m loupe_catalog migrate" in started.stdout
