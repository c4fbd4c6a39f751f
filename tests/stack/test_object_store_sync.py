"""The embedded object store syncs every write to the buckets before it acknowledges it, as
PostgreSQL and JetStream do: a blob is written before the row naming it, and that order is
worth something through a power cut only if the blob reached the disk first. (SeaweedFS keeps
that setting in its filer's own store; the stack writes it at every start.)"""

import base64
import json
from typing import Any

import httpx

from loupe_stack.stack import Stack


def _entries(platform: Stack, directory: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"http://127.0.0.1:{platform.settings.weed_filer_port}{directory}",
        headers={"Accept": "application/json"},
        params={"limit": 1000},
    )
    answer.raise_for_status()
    entries: list[dict[str, Any]] = answer.json()["Entries"] or []
    return entries


def test_every_bucket_is_under_a_path_whose_writes_are_synced(platform: Stack) -> None:
    stored = {e["FullPath"]: e for e in _entries(platform, "/etc/seaweedfs/")}
    conf = json.loads(base64.b64decode(stored["/etc/seaweedfs/filer.conf"]["Content"]))
    synced = [c["locationPrefix"] for c in conf["locations"] if c.get("fsync") is True]
    assert synced == ["/buckets/"]
    buckets = {e["FullPath"] for e in _entries(platform, "/buckets/")}
    for bucket in (platform.settings.images_bucket, platform.settings.backup_bucket):
        assert f"/buckets/{bucket}" in buckets
