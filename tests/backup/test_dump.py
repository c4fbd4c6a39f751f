"""The database dump: the tables described in four queries as they were one by one, the
moment its snapshot is fixed (the backup lists the images bucket from then on), and each
file's SHA-256 taken as it is written."""

import asyncio
import csv
import hashlib
from pathlib import Path

import asyncpg
import psycopg

from loupe_backup.backups import database
from loupe_backup.backups.manifest import Include
from loupe_stack.stack import Stack
from tests.databases import Databases


async def _one_by_one(
    conn: asyncpg.Connection, name: str
) -> tuple[list[str], list[str], list[str]]:
    """A table's columns, sequenced columns and partitions, asked for that table alone."""
    rows = await conn.fetch(
        """
        SELECT a.attname,
               a.attidentity <> '' OR pg_get_serial_sequence($1, a.attname) IS NOT NULL
                   AS sequenced
        FROM pg_attribute a
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
              AND a.attgenerated = ''
        ORDER BY a.attnum
        """,
        database.quote(name),
    )
    partitions = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass ORDER BY c.relname",
        database.quote(name),
    )
    return (
        [r["attname"] for r in rows],
        [r["attname"] for r in rows if r["sequenced"]],
        [p["relname"] for p in partitions],
    )


def test_describe_answers_what_each_table_answers_alone(
    platform: Stack, databases: Databases
) -> None:
    name = databases.create()

    async def run() -> None:
        conn = await platform.endpoints.pg_connect(name)
        try:
            tables = await database.describe(conn)
            assert len({t.name for t in tables}) == len(tables) > 5
            assert any(t.partitions for t in tables)
            assert any(t.identity_columns for t in tables)
            for table in tables:
                columns, sequenced, partitions = await _one_by_one(conn, table.name)
                assert table.copied_columns == columns, table.name
                assert table.identity_columns == sequenced, table.name
                assert [p.name for p in table.partitions] == partitions, table.name
        finally:
            await conn.close()

    asyncio.run(run())


def test_what_is_committed_after_the_snapshot_is_taken_is_not_dumped(
    platform: Stack, databases: Databases, tmp_path: Path
) -> None:
    name = databases.create()
    e = platform.endpoints
    with psycopg.connect(
        host=e.pg_host, port=e.pg_port, user=e.pg_user, password=e.pg_password, dbname=name
    ) as other:
        other.execute("CREATE TABLE probe (id int)")
        other.execute("INSERT INTO probe VALUES (1)")
        other.commit()
        calls: list[bool] = []

        def snapshot_taken() -> None:
            # Nothing is dumped yet; a row committed now is after the snapshot.
            calls.append((tmp_path / "probe.csv").exists())
            other.execute("INSERT INTO probe VALUES (2)")
            other.commit()

        async def run() -> list[database.Dumped]:
            conn = await e.pg_connect(name)
            try:
                dumped, _ = await database.dump(conn, Include(), tmp_path, snapshot_taken)
            finally:
                await conn.close()
            return dumped

        dumped = asyncio.run(run())
    assert calls == [False]
    probe = next(d for d in dumped if d.table.name == "probe")
    assert probe.rows == 1
    with probe.path.open(newline="") as source:
        assert list(csv.reader(source)) == [["id"], ["1"]]
    for item in dumped:  # hashed as written: the file's own digest and length
        data = item.path.read_bytes()
        assert (item.sha256, item.size) == (hashlib.sha256(data).hexdigest(), len(data))
