"""The catalog database as the backup service sees it: tables discovered from the database
itself (never a fixed list), dumped in one REPEATABLE READ transaction as CSV with a header,
and loaded back by column name in one transaction."""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg

from loupe_backup.backups.manifest import Column, Include, Partition

ALEMBIC = "alembic_version"
# Tables an `Include` can leave out; every other table is always backed up.
OPTIONAL_TABLES = {
    # With the programs go the tables whose rows point at them.
    "programs": (
        "programs",
        "program_revisions",
        "legacy_programs",
        "golden_images",
        "golden_runs",
    ),
    "images": ("image_records", "image_tombstones"),
    "results": ("results",),
    "audit": ("audit_log",),
}


@dataclass
class Table:
    name: str
    columns: list[Column]
    partitions: list[Partition] = field(default_factory=list)
    identity_columns: list[str] = field(default_factory=list)

    @property
    def copied_columns(self) -> list[str]:
        return [c.name for c in self.columns]


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def describe(conn: asyncpg.Connection) -> list[Table]:
    """Every table of the public schema (partitioned tables as one), in an order that loads
    referenced tables before the tables that reference them. Four queries, whatever the
    number of tables."""
    names = [
        r["relname"]
        for r in await conn.fetch(
            """
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            ORDER BY c.relname
            """
        )
    ]
    columns: dict[str, list[asyncpg.Record]] = {name: [] for name in names}
    for r in await conn.fetch(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
               a.attnotnull, a.atthasdef OR a.attidentity <> '' AS has_default,
               a.attidentity <> ''
                   OR pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname)
                      IS NOT NULL AS sequenced
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY c.relname, a.attnum
        """
    ):
        columns.setdefault(r["relname"], []).append(r)
    partitions: dict[str, list[Partition]] = {name: [] for name in names}
    for p in await conn.fetch(
        """
        SELECT parent.relname AS parent, c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class parent ON parent.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = parent.relnamespace
        WHERE n.nspname = 'public'
        ORDER BY parent.relname, c.relname
        """
    ):
        if p["parent"] in partitions:
            partitions[p["parent"]].append(Partition(name=p["relname"], bound=p["bound"]))
    tables = {
        name: Table(
            name=name,
            columns=[
                Column(
                    name=r["attname"],
                    type=r["type"],
                    nullable=not r["attnotnull"],
                    has_default=r["has_default"],
                )
                for r in columns[name]
            ],
            partitions=partitions[name],
            identity_columns=[r["attname"] for r in columns[name] if r["sequenced"]],
        )
        for name in names
    }
    edges = await conn.fetch(
        """
        SELECT DISTINCT src.relname AS child, dst.relname AS parent
        FROM pg_constraint k
        JOIN pg_class src ON src.oid = k.conrelid JOIN pg_class dst ON dst.oid = k.confrelid
        WHERE k.contype = 'f' AND k.connamespace = 'public'::regnamespace
        """
    )
    parents: dict[str, set[str]] = {name: set() for name in tables}
    for edge in edges:
        if edge["child"] in tables and edge["parent"] in tables:
            parents[edge["child"]].add(edge["parent"])
    ordered: list[str] = []
    while len(ordered) < len(tables):
        ready = [n for n in tables if n not in ordered and parents[n] <= {*ordered, n}] or [
            n for n in tables if n not in ordered
        ]  # a cycle: load the rest as listed
        ordered.append(ready[0])
    return [tables[n] for n in ordered]


def included(table: str, include: Include) -> bool:
    for flag, names in OPTIONAL_TABLES.items():
        if table in names:
            return bool(getattr(include, flag))
    return True


def _where(table: str, include: Include) -> tuple[str, list[Any]]:
    if table != "results":
        return "", []
    clauses, args = [], []
    for op, value in ((">=", include.results_since), ("<", include.results_until)):
        if value is not None:
            args.append(value)
            clauses.append(f"captured_at {op} ${len(args)}")
    return (" WHERE " + " AND ".join(clauses), args) if clauses else ("", [])


@dataclass
class Dumped:
    table: Table
    path: Path
    rows: int
    sha256: str
    size: int


class _HashedFile:
    """A COPY's output: written to a file and hashed as it arrives. Each chunk is one read of
    the connection (tens of kilobytes), written to the page cache and hashed in microseconds
    on the loop; a thread hop per chunk (asyncpg's way with a path) cost more than that, and
    hashing the file afterwards read it a second time."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self.target.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)


async def dump(
    conn: asyncpg.Connection,
    include: Include,
    directory: Path,
    snapshot_taken: Callable[[], object] | None = None,
) -> tuple[list[Dumped], list[str]]:
    """Write every included table to `directory` from one consistent snapshot; answer the
    files and every row of alembic_version. `snapshot_taken` is called once the snapshot is
    fixed (a REPEATABLE READ transaction takes it at its first statement, not at BEGIN):
    what is read after that call sees at least what the dump holds."""
    dumped: list[Dumped] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SELECT 1")
        if snapshot_taken is not None:
            snapshot_taken()
        tables = await describe(conn)
        revisions: list[str] = []
        if any(t.name == ALEMBIC for t in tables):
            revisions = [r[0] for r in await conn.fetch("SELECT * FROM alembic_version")]
        for table in tables:
            if not included(table.name, include):
                continue
            columns = ", ".join(quote(c) for c in table.copied_columns)
            where, args = _where(table.name, include)
            path = directory / f"{table.name}.csv"
            with path.open("wb") as target:
                out = _HashedFile(target)
                status = await conn.copy_from_query(
                    f"SELECT {columns} FROM {quote(table.name)}{where}",  # noqa: S608
                    *args,
                    output=out.write,
                    format="csv",
                    header=True,
                )
            rows = int(status.split()[-1])
            dumped.append(Dumped(table, path, rows, out.digest.hexdigest(), out.size))
    return dumped, sorted(revisions)


async def revisions(conn: asyncpg.Connection) -> list[str]:
    exists = await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL")
    if not exists:
        return []
    return sorted(r[0] for r in await conn.fetch("SELECT * FROM alembic_version"))


async def row_counts(conn: asyncpg.Connection, tables: list[Table]) -> dict[str, int]:
    return {
        t.name: int(await conn.fetchval(f"SELECT count(*) FROM {quote(t.name)}"))  # noqa: S608
        for t in tables
    }


# What a fresh installation writes by itself, which is no user data: the backup service's own
# audit records (an import, a verify, a dry run of the restore about to run).
_NOT_USER_DATA = {"audit_log": "action LIKE 'backup.%'"}


async def user_rows(conn: asyncpg.Connection, tables: list[Table]) -> dict[str, int]:
    """Rows that are user data, per table: `mode: "empty"` needs none."""
    counts: dict[str, int] = {}
    for t in tables:
        if t.name == ALEMBIC:
            continue
        skip = _NOT_USER_DATA.get(t.name)
        where = f" WHERE NOT ({skip})" if skip else ""
        query = f"SELECT count(*) FROM {quote(t.name)}{where}"  # noqa: S608 (names quoted)
        counts[t.name] = int(await conn.fetchval(query))
    return counts
