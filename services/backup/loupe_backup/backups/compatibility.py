"""Whether a backup set fits the running installation: the same schema revision, an older
one whose data loads into today's tables by column name, or something this code must not
load (a newer format or revision, a table or column that no longer exists)."""

from dataclasses import dataclass, field

from loupe_backup.backups.database import ALEMBIC, Table
from loupe_backup.backups.manifest import Manifest
from loupe_backup.backups.records import Compatibility
from loupe_shared.contracts.backup import BACKUP_FORMAT_VERSION


@dataclass
class Verdict:
    status: Compatibility
    reasons: list[str] = field(default_factory=list)


def _newer(backup: list[str], current: list[str]) -> bool:
    # Revisions are zero-padded sequence numbers ("0004"), so their order is their text order.
    return max(backup, default="") > max(current, default="")


def quick(format_version: int | None, backup: list[str], current: list[str]) -> Compatibility:
    """From the record alone (for lists)."""
    if format_version is None or format_version > BACKUP_FORMAT_VERSION:
        return "incompatible"
    if sorted(backup) == sorted(current):
        return "same"
    return "incompatible" if _newer(backup, current) else "migratable"


def check(manifest: Manifest, tables: list[Table], current: list[str]) -> Verdict:
    """From the manifest and the live schema (before a restore)."""
    status = quick(manifest.format_version, manifest.alembic_revisions, current)
    if status == "incompatible":
        return Verdict(
            status,
            [
                f"backup revision {max(manifest.alembic_revisions, default='none')} is newer "
                f"than this installation's {max(current, default='none')}"
            ],
        )
    live = {t.name: t for t in tables}
    reasons: list[str] = []
    for backed in manifest.tables:
        if backed.table == ALEMBIC:
            continue
        table = live.get(backed.table)
        if table is None:
            if backed.rows:
                reasons.append(f"table {backed.table} no longer exists")
            continue
        columns = {c.name: c for c in table.columns}
        names = {c.name for c in backed.columns}
        for column in backed.columns:
            if column.name not in columns:
                reasons.append(f"column {backed.table}.{column.name} no longer exists")
        for column in table.columns:
            if (
                column.name not in names
                and backed.columns
                and not (column.nullable or column.has_default)
            ):
                reasons.append(f"column {backed.table}.{column.name} has no value in the backup")
    if reasons:
        return Verdict("incompatible", reasons)
    return Verdict(status)
