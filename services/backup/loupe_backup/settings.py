from pydantic_settings import SettingsConfigDict

from loupe_shared.kit.settings import (
    DatabaseSettings,
    LeaseSettings,
    NatsSettings,
    S3Settings,
    ServiceSettings,
)


class BackupSettings(ServiceSettings, DatabaseSettings, S3Settings, NatsSettings, LeaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKUP_", extra="ignore", frozen=True)

    port: int = 8103
    images_bucket: str = "loupe-images"
    backup_bucket: str = "loupe-backups"
    # Objects copied at once (each in a worker thread: S3 calls and hashing block).
    copy_concurrency: int = 8
    # Where data files are written before upload and archives are spooled on import.
    work_dir: str = ""
    # A running backup whose state was not updated for this long is shown as failed (its
    # process died); progress is saved at least this often.
    stale_after_s: float = 120.0
    progress_interval_s: float = 0.5
    # Maintenance notices last this long unless renewed; the restore renews them every third.
    maintenance_lease_s: float = 30.0
    # Requests per token and minute that start work on the backup endpoints (reads: ten
    # times as many).
    rate_limit_per_minute: int = 60
    # An imported archive's manifest.json is refused above this size (before it is read), and
    # every other member above `import_member_max_bytes`.
    import_manifest_max_bytes: int = 64 * 1024 * 1024
    import_member_max_bytes: int = 8 * 1024**3
    # JSON bodies of the backup routes are refused above this size (413).
    json_body_max_bytes: int = 64 * 1024
    # How long a restore waits for every service to refuse writes and finish the ones under
    # way (its acknowledgement of the maintenance notice) before it gives up, changing nothing.
    fence_timeout_s: float = 20.0
    # Fault drills: hold the restore's transaction open this long before committing.
    restore_hold_before_commit_s: float = 0.0
    # How often due schedules are looked for (0: schedules run only on request). Schedules,
    # backup jobs and restores hold leases (`BACKUP_LEASE_TTL_S`): a job whose replica died
    # is marked failed about one TTL later (see backups/service.py).
    schedule_tick_s: float = 20.0
    # The JSON export (the frontend's format) is for small installations: it refuses more
    # master-image bytes than this (a backup archive has no such limit).
    export_max_image_bytes: int = 64 * 1024 * 1024
