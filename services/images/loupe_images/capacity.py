"""The object store's capacity and free space, measured when `/metrics` is scraped.

S3 has no call for either, so they come from one of two sources, chosen by settings:
- `IMAGES_STORE_ADMIN_URL`, the SeaweedFS master's HTTP address: its `/dir/status` names the
  volume servers, and each one's `/status` reports its disks' total and free bytes (the
  filesystems the volumes live on). Both gauges carry `source="seaweedfs"`.
- `IMAGES_STORE_QUOTA_BYTES`, a capacity set by the operator (a MinIO bucket quota, a share of
  a disk, a cloud budget): the capacity gauge only, `source="quota"`; the rules compare it with
  the catalog's `images_stored_bytes`.
With neither, both gauges are exported without samples."""

import asyncio

import httpx
from fastapi import Request
from prometheus_client import CollectorRegistry, Gauge

from loupe_images.settings import ImagesSettings
from loupe_shared.kit.scrape import Scrape, at_most_every

# The volume servers' disks change slowly; asking every one of them on every scrape of every
# replica would cost more than it tells.
REFRESH_S = 30.0


async def seaweedfs_disks(client: httpx.AsyncClient, master_url: str) -> tuple[int, int]:
    """(total, free) bytes of the disks of every volume server the master knows."""
    answer = await client.get(f"{master_url.rstrip('/')}/dir/status")
    answer.raise_for_status()
    nodes = {
        node["Url"]
        for center in answer.json()["Topology"]["DataCenters"] or []
        for rack in center["Racks"] or []
        for node in rack["DataNodes"] or []
    }

    async def disks(url: str) -> list[dict[str, int]]:
        status = await client.get(f"http://{url}/status")
        status.raise_for_status()
        return list(status.json().get("DiskStatuses") or [])

    found = await asyncio.gather(*(disks(url) for url in sorted(nodes)))
    every = [disk for node in found for disk in node]
    if not every:
        raise RuntimeError("the SeaweedFS master knows no volume server")
    return sum(int(d["all"]) for d in every), sum(int(d["free"]) for d in every)


def install(registry: CollectorRegistry, settings: ImagesSettings) -> None:
    capacity = Gauge(
        "images_store_capacity_bytes",
        "Capacity of the object store, by where the figure comes from (seaweedfs, quota)",
        ["source"],
        registry=registry,
    )
    free = Gauge(
        "images_store_free_bytes",
        "Free space in the object store as its admin interface reports it, by source",
        ["source"],
        registry=registry,
    )
    if settings.store_admin_url:
        url = settings.store_admin_url

        async def measure(_: Request) -> None:
            async with httpx.AsyncClient(timeout=3) as client:
                total, available = await seaweedfs_disks(client, url)
            capacity.labels("seaweedfs").set(total)
            free.labels("seaweedfs").set(available)

        Scrape.of(registry).add("store_capacity", at_most_every(REFRESH_S, measure))
    elif settings.store_quota_bytes > 0:
        capacity.labels("quota").set(settings.store_quota_bytes)
