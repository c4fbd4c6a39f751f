"""Where things live in the backup bucket (see the README's "Bucket layout")."""

BLOBS = "blobs/"
SETS = "sets/"
RESTORES = "restores/"
# Blobs that failed verification, kept for inspection, never read again.
QUARANTINE = "quarantine/"


def blob_key(sha256: str) -> str:
    return f"{BLOBS}{sha256[:2]}/{sha256}"


def set_prefix(backup_id: str) -> str:
    return f"{SETS}{backup_id}/"


def state_key(backup_id: str) -> str:
    return f"{set_prefix(backup_id)}state.json"


def manifest_key(backup_id: str) -> str:
    return f"{set_prefix(backup_id)}manifest.json"


def data_key(backup_id: str, file: str) -> str:
    return f"{set_prefix(backup_id)}{file}"


def restore_key(restore_id: str) -> str:
    return f"{RESTORES}{restore_id}.json"
