"""The JetStream streams Loupe relies on.

Every stream that carries data is file-backed; the duplicate window makes publishes carrying a
`Nats-Msg-Id` idempotent for that long.
"""

from dataclasses import dataclass

from loupe_shared.contracts import subjects


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    max_age_s: float = 0.0  # 0 keeps messages until limits or acknowledgement remove them
    duplicate_window_s: float = 120.0
    work_queue: bool = False


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("IMAGES", ("images.>",), max_age_s=7 * 86400),
    StreamSpec("PROGRAMS", ("programs.>",), max_age_s=7 * 86400),
    # Kept a week after ingest, so an ingester down for days loses nothing.
    StreamSpec("RESULTS", ("results.>",), max_age_s=7 * 86400, duplicate_window_s=600.0),
    StreamSpec("INSPECTION", ("inspection.>",), work_queue=True),
    StreamSpec("BACKUP", ("backup.>",), max_age_s=30 * 86400),
    StreamSpec("INTEGRITY", ("integrity.>",), max_age_s=30 * 86400),
    # What other services did that the audit log must show (downloads, exports, restores).
    StreamSpec("AUDIT", ("audit.>",), max_age_s=30 * 86400),
    StreamSpec("DEADLETTER", (f"{subjects.DEADLETTER}.>",), max_age_s=30 * 86400),
)

TOKENS_BUCKET = "LOUPE_TOKENS"
# Maintenance notices (a restore in progress); read by every HTTP service.
MAINTENANCE_BUCKET = "LOUPE_MAINTENANCE"
# Idempotency keys of unsafe API requests and the answers they got; every HTTP service.
IDEMPOTENCY_BUCKET = "LOUPE_IDEMPOTENCY"
# Leases of work one replica runs at a time (scrub, collection, schedules; see kit.lease).
LEASES_BUCKET = "LOUPE_LEASES"
