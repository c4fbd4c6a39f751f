"""NATS subjects, named `domain.event`.

A namespace (used by tests to isolate their data on a shared server) is put in front of every
subject and stream name; production runs with the empty namespace.
"""

IMAGES_STORED = "images.stored"
IMAGES_DELETED = "images.deleted"
PROGRAMS_REVISED = "programs.revised"
PROGRAMS_ARCHIVED = "programs.archived"
PROGRAMS_UNARCHIVED = "programs.unarchived"
RESULTS_RECORDED = "results.recorded"
INSPECTION_REQUESTED = "inspection.requested"
BACKUP_PROGRESS = "backup.progress"
BACKUP_COMPLETED = "backup.completed"
BACKUP_FAILED = "backup.failed"
INTEGRITY_MISMATCH = "integrity.mismatch"
AUDIT_RECORDED = "audit.recorded"
DEADLETTER = "deadletter"
# Core NATS notices: no stream keeps them (a lost one costs a reader a moment, never data).
# Results were stored: sent by every ingester after a commit (`loupe_catalog/results/ingest.py`);
# heard by every catalog replica, to answer readers waiting for new results (`results/stored.py`).
NOTICE_RESULTS_STORED = "notice.results.stored"
# Requests between services (core NATS request/reply, answered by a queue group).
# Claim images for deletion (granted unless a revision or result references them).
# Served by: catalog, queue group "catalog" (`loupe_catalog/image_records/rpc.py`).
# Called by: images, deleting on request and collecting garbage (`loupe_images/images/deletion.py`).
RPC_IMAGE_CLAIMS = "rpc.catalog.image-claims"
# Claims older than a while (deletions a crash interrupted), to be finished.
# Served by: catalog, queue group "catalog" (`loupe_catalog/image_records/rpc.py`).
# Called by: images, at the start of each garbage collection (`loupe_images/images/deletion.py`).
RPC_IMAGE_TOMBSTONES = "rpc.catalog.image-tombstones"
# Inspect one capture with one revision and answer the result (golden-set test runs).
# Served by: inspect, every worker in queue group "inspect-evaluate" (`loupe_inspect/rpc.py`).
# Called by: catalog, running a golden set (`loupe_catalog/golden/evaluator.py`).
RPC_INSPECT_EVALUATE = "rpc.inspect.evaluate"


def subject(name: str, namespace: str = "") -> str:
    """The wire subject for `name` in `namespace`."""
    return f"{namespace}.{name}" if namespace else name


def stream_name(name: str, namespace: str = "") -> str:
    """The JetStream stream (or KV bucket) name for `name` in `namespace`."""
    return f"{namespace.upper()}_{name}" if namespace else name
