"""What the backup service shares with the rest of the platform: the maintenance notice
every HTTP service honours during a restore, and the backup-set format version."""

from datetime import UTC, datetime

from pydantic import BaseModel

# Bumped when the layout of a backup set changes; older sets are read through an upgrade step,
# newer ones are refused (see services/backup/README.md).
BACKUP_FORMAT_VERSION = 2
MAINTENANCE_KEY = "restore"
# Keys of the maintenance bucket beside the notice: `live.<service>.<instance>` (a heartbeat of
# every service instance that honours notices) and `ack.<service>.<instance>` (the restore id
# whose notice that instance honours, with no write of its own still under way).
LIVE_PREFIX = "live."
ACK_PREFIX = "ack."
# An instance whose heartbeat is older than this is gone; an instance that could not read the
# bucket for this long refuses writes by itself, so a restore need not wait for it.
PRESENCE_TTL_S = 10.0


class MaintenanceNotice(BaseModel):
    """Written by a restore to the maintenance key-value bucket. Writes are refused while it is
    present and its lease has not run out; the restoring service renews the lease, so a
    restore that died ends maintenance by itself within `lease_s`."""

    restore_id: str
    backup_id: str
    started_at: datetime
    lease_until: datetime
    message: str = "A restore is running; changes are refused until it has finished."

    @property
    def active(self) -> bool:
        return self.lease_until > datetime.now(UTC)


class InstanceBeat(BaseModel):
    """What `live.*` and `ack.*` keys hold."""

    service: str
    instance: str
    at: datetime
    restore_id: str | None = None
