"""All SQL about image records, their references and deletion claims.

Deleting a blob and saving a program that references it are serialised by an advisory lock
on the image's hash: a save holds it shared until its transaction ends and refuses an image
that has a tombstone; a deletion claim holds it exclusively while it checks the references
and writes the tombstone. Either the claim sees the saved revision (and refuses), or the
save sees the tombstone (and refuses) — a referenced blob is never deleted.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loupe_catalog.golden.tables import golden_images
from loupe_catalog.tables import (
    image_records,
    image_tombstones,
    program_revisions,
    programs,
    results,
)

# First key of the two-key advisory lock: the images' lock space ("LOUP").
_LOCK_SPACE = 0x4C4F5550
Conn = AsyncSession | AsyncConnection


async def upsert(conn: Conn, values: dict[str, Any]) -> None:
    """Record an image; events may arrive twice, and in any order. A repeat keeps the first
    sighting, fills in what the first one lacked (line, thumbnails: the event announcing more
    thumbnail bytes wins, so the announcement of the small thumbnail alone, redelivered after
    the one of both, changes nothing) and revives a record whose blob an admin had deleted and
    that was uploaded again."""
    statement = insert(image_records).values(**values)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["sha256"],
        set_={
            "line_id": sa.func.coalesce(
                sa.func.nullif(image_records.c.line_id, ""), excluded.line_id
            ),
            "thumbnails": sa.case(
                (excluded.thumbnail_bytes > image_records.c.thumbnail_bytes, excluded.thumbnails),
                else_=image_records.c.thumbnails,
            ),
            "thumbnail_bytes": sa.func.greatest(
                image_records.c.thumbnail_bytes, excluded.thumbnail_bytes
            ),
            "deleted_at": None,
        },
    )
    await conn.execute(statement)


async def page(
    session: AsyncSession,
    *,
    kind: str | None,
    line_id: str | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[RowMapping]:
    """Live records, newest first; `after` is the (first_seen_at, sha256) the page continues
    below (the `image_records_seen` index)."""
    c = image_records.c
    query = sa.select(image_records).where(c.deleted_at.is_(None))
    if kind is not None:
        query = query.where(c.kind == kind)
    if line_id is not None:
        query = query.where(c.line_id == line_id)
    if since is not None:
        query = query.where(c.first_seen_at >= since)
    if until is not None:
        query = query.where(c.first_seen_at < until)
    if after is not None:
        query = query.where(sa.tuple_(c.first_seen_at, c.sha256) < sa.tuple_(*after))
    query = query.order_by(c.first_seen_at.desc(), c.sha256.desc()).limit(limit)
    return list((await session.execute(query)).mappings().all())


async def get(session: AsyncSession, sha256: str) -> RowMapping | None:
    query = sa.select(image_records).where(image_records.c.sha256 == sha256)
    return (await session.execute(query)).mappings().first()


async def references(session: AsyncSession, sha256: str) -> list[RowMapping]:
    """Every program revision that uses the image, with its program's name and state."""
    query = (
        sa.select(
            programs.c.id.label("program_id"),
            programs.c.name,
            programs.c.archived_at,
            programs.c.current_revision,
            program_revisions.c.revision,
        )
        .join(programs, programs.c.id == program_revisions.c.program_id)
        .where(program_revisions.c.master_image_sha256 == sha256)
        .order_by(programs.c.id, program_revisions.c.revision)
    )
    return list((await session.execute(query)).mappings())


async def lock_for_reference(conn: Conn, sha256: str) -> bool:
    """Called by a save before it references `sha256`: holds the image's lock shared until
    the transaction ends. Answers False when the image is being deleted."""
    await conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock_shared(_LOCK_SPACE, sa.func.hashtext(sha256)))
    )
    query = sa.select(image_tombstones.c.sha256).where(image_tombstones.c.sha256 == sha256)
    return (await conn.execute(query)).first() is None


async def referenced_by(conn: Conn, shas: list[str]) -> dict[str, list[dict[str, Any]]]:
    """For each referenced hash of `shas`, what uses it: program revisions (master images)
    and results (captures). Anything that keeps an image alive is asked here."""
    query = (
        sa.select(
            program_revisions.c.master_image_sha256.label("sha256"),
            programs.c.id.label("program_id"),
            programs.c.name,
            program_revisions.c.revision,
        )
        .join(programs, programs.c.id == program_revisions.c.program_id)
        .where(program_revisions.c.master_image_sha256.in_(shas))
        .order_by(programs.c.id, program_revisions.c.revision)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in (await conn.execute(query)).mappings():
        found.setdefault(row["sha256"], []).append(
            {"program_id": str(row["program_id"]), "name": row["name"], "revision": row["revision"]}
        )
    captures = (
        sa.select(results.c.capture_sha256, sa.func.count().label("results"))
        .where(results.c.capture_sha256.in_(shas))
        .group_by(results.c.capture_sha256)
    )
    for row in (await conn.execute(captures)).mappings():
        found.setdefault(row["capture_sha256"], []).append({"results": row["results"]})
    golden = (
        sa.select(
            golden_images.c.capture_sha256, golden_images.c.program_id, golden_images.c.revision
        )
        .where(golden_images.c.capture_sha256.in_(shas))
        .order_by(golden_images.c.program_id, golden_images.c.revision)
    )
    for row in (await conn.execute(golden)).mappings():
        found.setdefault(row["capture_sha256"], []).append(
            {"golden_set": {"program_id": str(row["program_id"]), "revision": row["revision"]}}
        )
    return found


async def claim_deletion(
    conn: AsyncConnection,
    shas: list[str],
    *,
    reason: str,
    claimed_by: str,
    force: bool,
    dry_run: bool,
) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Claim the right to delete each blob of `shas`: locks each hash exclusively (in order,
    so two claims cannot deadlock), then re-checks its references. Answers the granted hashes
    (tombstoned unless `dry_run`) and the referenced ones with their revisions."""
    wanted = sorted(set(shas))
    # A save holding the lock for long makes the claim fail (and the blob stay) rather than wait.
    await conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
    for sha in wanted:
        await conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(_LOCK_SPACE, sa.func.hashtext(sha)))
        )
    # A new statement, so it sees every save committed before the locks were granted.
    refs = await referenced_by(conn, wanted) if wanted else {}
    granted = [sha for sha in wanted if force or sha not in refs]
    if granted and not dry_run:
        statement = insert(image_tombstones).values(
            [
                {"sha256": sha, "reason": reason, "claimed_by": claimed_by, "forced": force}
                for sha in granted
            ]
        )
        await conn.execute(statement.on_conflict_do_nothing(index_elements=["sha256"]))
    return granted, {sha: refs[sha] for sha in wanted if sha in refs}


async def stale_tombstones(conn: AsyncConnection, older_than_s: float, limit: int) -> list[str]:
    """Claims whose deletion was never announced (the deleter stopped midway)."""
    query = (
        sa.select(image_tombstones.c.sha256)
        .where(
            image_tombstones.c.claimed_at
            < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
        )
        .order_by(image_tombstones.c.claimed_at)
        .limit(limit)
    )
    return [row[0] for row in await conn.execute(query)]


async def finish_deletion(conn: AsyncConnection, sha256: str, *, forced: bool) -> str:
    """The blob is gone: drop its record (or, when revisions still reference it after a forced
    deletion, mark it deleted) and release the claim. Answers what happened to the record."""
    referenced = sa.exists().where(program_revisions.c.master_image_sha256 == sha256)
    deleted = await conn.execute(
        sa.delete(image_records).where(image_records.c.sha256 == sha256, ~referenced)
    )
    outcome = "deleted"
    if not deleted.rowcount:
        marked = await conn.execute(
            sa.update(image_records)
            .where(image_records.c.sha256 == sha256)
            .values(deleted_at=sa.func.now())
        )
        outcome = "marked" if marked.rowcount else "absent"
    await conn.execute(sa.delete(image_tombstones).where(image_tombstones.c.sha256 == sha256))
    return outcome


async def usage(conn: Conn) -> list[RowMapping]:
    """Bytes and counts per line and kind, thumbnails apart, of the blobs that exist."""
    query = (
        sa.select(
            image_records.c.line_id,
            image_records.c.kind,
            sa.func.count().label("objects"),
            sa.func.coalesce(sa.func.sum(image_records.c.size), 0).label("bytes"),
            sa.func.coalesce(
                sa.func.sum(sa.func.jsonb_array_length(image_records.c.thumbnails)), 0
            ).label("thumbnail_objects"),
            sa.func.coalesce(sa.func.sum(image_records.c.thumbnail_bytes), 0).label(
                "thumbnail_bytes"
            ),
        )
        .where(image_records.c.deleted_at.is_(None))
        .group_by(image_records.c.line_id, image_records.c.kind)
        .order_by(image_records.c.line_id, image_records.c.kind)
    )
    return list((await conn.execute(query)).mappings())
