"""Planning a legacy migration: read the export, check each program, and decide per program
(import, new revision, already migrated, duplicate, invalid) against what the catalog holds.
A dry run is the plan alone."""

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from loupe_catalog.legacy import images as legacy_images
from loupe_catalog.legacy import parsing, repository
from loupe_catalog.legacy.schemas import OUTCOMES, ItemReport, Report
from loupe_catalog.legacy.upgrade import ConfigError, upgrade_config
from loupe_catalog.programs import service as programs
from loupe_catalog.settings import CatalogSettings
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import Problem

_log = get_logger("catalog.legacy")
TAG = "migrated"


@dataclass
class Planned:
    entry: parsing.LegacyEntry
    item: ItemReport
    image: legacy_images.MasterImage | None = None
    config: dict[str, Any] = field(default_factory=dict)
    existing: RowMapping | None = None
    previous_revision: int | None = None
    # Passed every check that needs no database (see `prepare`).
    ready: bool = False

    def reset(self) -> None:
        """Forget what the catalog was found to hold, to decide again."""
        self.item.outcome = "imported"
        self.item.reason_code = self.item.reason = None
        self.item.program_id = self.item.revision = None
        self.existing = None

    def invalid(self, code: str, reason: str) -> None:
        self.item.outcome = "invalid"
        self.item.reason_code = code
        self.item.reason = reason

    def failed(self, code: str, reason: str) -> None:
        self.item.outcome = "failed"
        self.item.reason_code = code
        self.item.reason = reason


def prepare(entries: list[parsing.LegacyEntry], max_image_bytes: int) -> list[Planned]:
    """Everything that needs no database: shape, duplicates, images, configs. CPU-bound
    (base64 and SHA-256 of every image): run it in a worker thread."""
    planned: list[Planned] = []
    seen: dict[str, int] = {}
    for entry in entries:
        item = ItemReport(
            position=entry.position,
            legacy_id=entry.legacy_id,
            name=entry.name,
            outcome="imported",
            warnings=list(entry.warnings),
        )
        plan = Planned(entry, item)
        planned.append(plan)
        if entry.problem is not None:
            plan.invalid("bad_entry", entry.problem)
            continue
        assert entry.legacy_id is not None
        if entry.legacy_id in seen:
            item.outcome = "duplicate"
            item.reason_code = "duplicate_legacy_id"
            item.reason = f"the same id as the program at position {seen[entry.legacy_id]}"
            continue
        seen[entry.legacy_id] = entry.position
        if entry.image is not None:
            try:
                plan.image = legacy_images.decode(entry.image, max_image_bytes)
            except legacy_images.ImageError as exc:
                plan.invalid(exc.code, exc.message)
                continue
            item.master_image_sha256 = plan.image.sha256
            item.image_bytes = len(plan.image.data)
            item.warnings += plan.image.warnings
        try:
            upgraded = upgrade_config(entry.config)
        except ConfigError as exc:
            plan.invalid("config_not_upgradable", f"the config cannot be upgraded: {exc}")
            continue
        plan.config = upgraded.config
        item.config_from_version = upgraded.from_version
        item.data_checksum = programs.data_checksum(plan.config, item.master_image_sha256)
        plan.ready = True
    return planned


async def decide(session: AsyncSession, planned: list[Planned]) -> None:
    """Against what the catalog holds: new program, new revision, already migrated, or a
    name another active program holds."""
    valid = [p for p in planned if p.ready]
    existing = await repository.programs_by_legacy_id(
        session, [p.entry.legacy_id for p in valid if p.entry.legacy_id]
    )
    taken = await repository.active_names(session, [(p.entry.name or "").strip() for p in valid])
    claimed: dict[str, int] = {}
    for plan in valid:
        entry, item = plan.entry, plan.item
        assert entry.legacy_id is not None
        assert entry.name is not None
        name = entry.name.strip()
        found = existing.get(entry.legacy_id)
        owner: uuid.UUID | None = None
        if found is not None:
            plan.existing = found
            item.program_id = found["id"]
            item.revision = found["current_revision"]
            owner = found["id"]
            same_source = found["source_checksum"] == entry.source_checksum
            same_content = (
                found["source_checksum"] is None
                and found["data_checksum"] == item.data_checksum
                and found["name"] == name
            )
            if same_source or same_content:
                item.outcome = "already_migrated"
                continue
            if found["archived_at"] is not None:
                plan.invalid(
                    "archived_in_loupe",
                    "changed since it was migrated, but its program is archived in Loupe: "
                    "unarchive it to migrate the change",
                )
                continue
            item.outcome = "revised"
        key = name.lower()
        holder = taken.get(key)
        if (holder is not None and holder != owner) or key in claimed:
            where = (
                f"the program at position {claimed[key]} of this export"
                if key in claimed
                else "an active program"
            )
            plan.invalid("name_clash", f"{where} is already named {name!r}; rename one of them")
            continue
        claimed[key] = entry.position


def totals(planned: list[Planned]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
    for plan in planned:
        counts[plan.item.outcome] += 1
    return {"programs": len(planned), **counts}


async def read(body: bytes, settings: CatalogSettings) -> tuple[parsing.LegacyInput, str]:
    if not body.strip():
        raise Problem(422, "The body is empty: send the exported JSON.", title="Empty export")
    digest = hashlib.sha256(body).hexdigest()
    try:
        parsed = await asyncio.to_thread(parsing.parse, body)
    except parsing.InputError as exc:
        status = 400 if exc.code == "not_json" else 422
        raise Problem(
            status, f"The export cannot be read: {exc}", title="Unreadable legacy export"
        ) from None
    if len(parsed.entries) > settings.legacy_max_programs:
        raise Problem(
            422,
            f"The export holds {len(parsed.entries)} programs; at most "
            f"{settings.legacy_max_programs} are migrated in one run. Split the array and "
            "run each part (a run is safe to repeat).",
            title="Too many programs",
        )
    return parsed, digest


async def plan(
    session: AsyncSession, body: bytes, settings: CatalogSettings
) -> tuple[parsing.LegacyInput, str, list[Planned]]:
    parsed, digest = await read(body, settings)
    planned = await asyncio.to_thread(prepare, parsed.entries, settings.legacy_max_image_bytes)
    await decide(session, planned)
    return parsed, digest, planned


async def dry_run(session: AsyncSession, body: bytes, settings: CatalogSettings) -> Report:
    parsed, digest, planned = await plan(session, body, settings)
    counts = totals(planned)
    _log.info("migrations.legacy_dry_run", input_sha256=digest, **counts)
    return Report(
        run_id=None,
        dry_run=True,
        input_sha256=digest,
        input_shape=parsed.shape,
        totals=counts,
        items=[p.item for p in planned],
    )
