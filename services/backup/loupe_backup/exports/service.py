"""The single JSON document the frontend already knows (`version`, `timestamp`, `metadata`,
`data.programs`, `data.images` as base64 data URLs keyed by program id, `data.results`,
`data.logs`), for small installations. Importing it is the catalog's legacy migration
(`POST /api/migrations/legacy`), which reads exactly this shape."""

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from minio import Minio

from loupe_backup.backups import objects
from loupe_backup.settings import BackupSettings
from loupe_shared import __version__
from loupe_shared.kit import db
from loupe_shared.kit import s3 as s3kit

EXPORT_VERSION = "1.0.0"


class TooLarge(Exception):
    pass


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json(value: Any) -> Any:
    """A `jsonb` column's text as a value the response can always render: orjson reads an
    integer beyond 64 bits (how `jsonb` gives back a stored `1e20`) as a float."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:  # nested deeper than any reader takes
        return None


async def _programs(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT p.id, p.name, p.description, p.tags, p.created_at, p.updated_at, p.archived_at,
               p.current_revision, p.master_image_sha256, r.config
        FROM programs p
        JOIN program_revisions r ON r.program_id = p.id AND r.revision = p.current_revision
        ORDER BY p.created_at, p.id
        """
    )
    return [
        {
            "id": str(r["id"]),
            "name": r["name"],
            "description": r["description"],
            "tags": list(r["tags"]),
            "config": _json(r["config"]),
            "revision": r["current_revision"],
            "masterImageSha256": (r["master_image_sha256"] or "").strip() or None,
            "archived": r["archived_at"] is not None,
            "createdAt": _iso(r["created_at"]),
            "updatedAt": _iso(r["updated_at"]),
        }
        for r in rows
    ]


async def _results(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT result_id, line_id, station, program_id, program_revision, part_id, verdict,
               score, defects, processing_ms, captured_at, capture_sha256
        FROM results ORDER BY captured_at DESC, result_id LIMIT $1
        """,
        limit,
    )
    return [
        {
            "id": str(r["result_id"]),
            "lineId": r["line_id"],
            "station": r["station"],
            "programId": str(r["program_id"]) if r["program_id"] else None,
            "programRevision": r["program_revision"],
            "partId": r["part_id"],
            "verdict": r["verdict"],
            "score": r["score"],
            "defects": _json(r["defects"]),
            "processingMs": r["processing_ms"],
            "timestamp": _iso(r["captured_at"]),
            "captureSha256": (r["capture_sha256"] or "").strip() or None,
        }
        for r in rows
    ]


async def _logs(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, at, actor, role, action, target, details FROM audit_log "
        "ORDER BY id DESC LIMIT $1",
        limit,
    )
    return [
        {
            "id": r["id"],
            "timestamp": _iso(r["at"]),
            "actor": r["actor"],
            "role": r["role"],
            "action": r["action"],
            "target": r["target"],
            "details": _json(r["details"]),
        }
        for r in rows
    ]


def _data_url(s3: Minio, bucket: str, sha256: str) -> tuple[str, int] | None:
    fetched = objects.fetch(s3, bucket, s3kit.image_blob_key(sha256))
    if fetched is None:
        return None
    encoded = base64.b64encode(fetched.data).decode()
    return f"data:{fetched.content_type};base64,{encoded}", len(fetched.data)


async def export(
    settings: BackupSettings,
    s3: Minio,
    *,
    images: bool,
    results: int,
    logs: int,
) -> dict[str, Any]:
    conn = await db.connect(settings, "loupe-backup-export")
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            programs = await _programs(conn)
            found_results = await _results(conn, results) if results else []
            found_logs = await _logs(conn, logs) if logs else []
    finally:
        await conn.close()
    encoded: dict[str, str] = {}
    total = 0
    if images:
        for program in programs:
            sha = program["masterImageSha256"]
            if sha is None:
                continue
            found = await asyncio.to_thread(_data_url, s3, settings.images_bucket, sha)
            if found is None:
                continue
            encoded[program["id"]], size = found
            total += size
            if total > settings.export_max_image_bytes:
                raise TooLarge(
                    f"the master images exceed {settings.export_max_image_bytes} bytes; "
                    "use a backup archive (GET /api/backups/{id}/archive) instead"
                )
    return {
        "version": EXPORT_VERSION,
        "timestamp": datetime.now(UTC).isoformat(),
        "metadata": {
            "source": "loupe",
            "appVersion": __version__,
            "programCount": len(programs),
            "imageCount": len(encoded),
            "resultCount": len(found_results),
            "logCount": len(found_logs),
            "totalSize": total,
        },
        "data": {
            "programs": programs,
            "images": encoded,
            "results": found_results,
            "logs": found_logs,
        },
    }
