"""The integrity scrub, storage usage and degradation, against a store of the test's own."""

import hashlib
import io
from typing import Any

import httpx

from loupe_images.images import storage
from loupe_shared.contracts import subjects
from loupe_shared.kit import s3 as s3kit
from loupe_shared.kit.auth import Role
from tests.images.conftest import IsolatedStore
from tests.images.helpers import events, make_image, record
from tests.support import CuttableProxy, eventually


def _tamper(store: IsolatedStore, key: str) -> bytes:
    """Flip bytes of a stored object in place (same key, same metadata): bit rot."""
    info = store.s3.stat_object(store.bucket, key)
    data = bytearray(store.s3.get_object(store.bucket, key).read())
    for at in (len(data) // 3, len(data) // 2):
        data[at] ^= 0xFF
    meta: dict[str, Any] = {
        k.removeprefix("x-amz-meta-"): v
        for k, v in (info.metadata or {}).items()
        if k.lower().startswith("x-amz-meta-")
    }
    store.s3.put_object(
        store.bucket,
        key,
        io.BytesIO(bytes(data)),
        len(data),
        content_type=info.content_type or "application/octet-stream",
        metadata=meta,
    )
    return bytes(data)


def _scrub(images: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    started = images.post("/api/integrity/scrub", headers=headers)
    assert started.status_code == 202, started.text
    assert started.json()["started"] is True

    def done() -> bool:
        report = images.get("/api/integrity/report", headers=headers).json()
        return report["scrub"]["state"] == "done" and not report["scrub"]["running_here"]

    eventually("scrub pass", done, timeout_s=60)
    report: dict[str, Any] = images.get("/api/integrity/report", headers=headers).json()
    return report


def test_scrub_quarantines_and_reports_corrupt_and_missing_objects(
    isolated_store: IsolatedStore,
) -> None:
    store = isolated_store
    store.start_catalog()
    store.start_images(IMAGES_SCRUB_BATCH_S="0.05", IMAGES_SCRUB_PAUSE_S="0.01")
    engineer = store.token(Role.ENGINEER)
    operator = store.token(Role.OPERATOR)
    originals = [make_image(".jpg", seed=s, size=(1200, 1600)) for s in (21, 22, 23, 24)]
    with store.client() as images:
        shas = []
        for data in originals:
            answer = images.post("/api/images", content=data, headers=engineer)
            assert answer.status_code == 201
            shas.append(answer.json()["sha256"])
        rotten, thumb_rotten, lost, sound = shas
        flipped = _tamper(store, storage.blob_key(rotten))
        _tamper(store, storage.thumbnail_key(thumb_rotten, 256))
        store.s3.remove_object(store.bucket, storage.blob_key(lost))

        # Viewers and engineers cannot start a pass or read the report.
        assert images.post("/api/integrity/scrub", headers=engineer).status_code == 403
        assert images.get("/api/integrity/report", headers=engineer).status_code == 403

        report = _scrub(images, operator)
        found = {f["id"]: f for f in report["findings"]}
        assert set(found) == {
            f"{rotten}-blob",
            f"{thumb_rotten}-thumbnail-256",
            f"{lost}-blob",
        }
        blob = found[f"{rotten}-blob"]
        assert blob["problem"] == "mismatch"
        assert blob["actual_sha256"] == hashlib.sha256(flipped).hexdigest()
        # Quarantined, not deleted: the corrupt bytes are kept aside.
        kept = store.s3.get_object(store.bucket, blob["quarantine_key"]).read()
        assert kept == flipped
        assert images.get(f"/api/images/{rotten}", headers=engineer).status_code == 404
        thumb = found[f"{thumb_rotten}-thumbnail-256"]
        assert thumb["problem"] == "mismatch"
        assert thumb["repaired"] is True
        assert store.s3.stat_object(store.bucket, thumb["quarantine_key"]).size
        served = images.get(
            f"/api/images/{thumb_rotten}/thumbnail", params={"size": 256}, headers=engineer
        )
        status = images.get(f"/api/images/{thumb_rotten}/status", headers=engineer).json()
        recorded = next(t["sha256"] for t in status["thumbnails"] if t["size"] == 256)
        assert hashlib.sha256(served.content).hexdigest() == recorded
        assert found[f"{lost}-blob"]["problem"] == "missing"
        assert found[f"{lost}-blob"]["quarantine_key"] is None
        assert report["scrub"]["last_complete"]["findings"] == 3
        # 4 blobs + 8 thumbnails, less the missing blob.
        assert report["scrub"]["last_complete"]["objects"] == 11

        mismatches = events(store.nats, store.namespace, subjects.INTEGRITY_MISMATCH)
        assert sorted((e["object"], e["problem"]) for e in mismatches) == [
            ("blob", "mismatch"),
            ("blob", "missing"),
            ("thumbnail-256", "mismatch"),
        ]
        metrics = images.get("/metrics", headers=store.admin).text
        assert 'images_integrity_findings_total{object="blob",problem="mismatch"} 1.0' in metrics
        assert 'images_integrity_findings_total{object="blob",problem="missing"} 1.0' in metrics
        assert (
            'images_integrity_findings_total{object="thumbnail",problem="mismatch"} 1.0' in metrics
        )

        # The sound bytes uploaded again: the next pass marks the finding resolved and reports
        # nothing new (the missing blob is not reported twice).
        again = images.post("/api/images", content=originals[0], headers=engineer)
        assert again.status_code == 201
        second = _scrub(images, operator)
        assert second["scrub"]["last_complete"]["findings"] == 0
        assert second["scrub"]["last_complete"]["resolved"] == 1
        resolved = {f["id"]: f for f in second["findings"]}
        assert resolved[f"{rotten}-blob"]["resolved_at"] is not None
        assert resolved[f"{lost}-blob"]["resolved_at"] is None
        still_open = images.get(
            "/api/integrity/report", params={"open_only": True}, headers=operator
        ).json()
        assert [f["id"] for f in still_open["findings"]] == [f"{lost}-blob"]
        paged = images.get("/api/integrity/report", params={"limit": 2}, headers=operator).json()
        assert len(paged["findings"]) == 2
        rest = images.get(
            "/api/integrity/report",
            params={"limit": 2, "cursor": paged["next_cursor"]},
            headers=operator,
        ).json()
        assert [f["id"] for f in paged["findings"] + rest["findings"]] == sorted(found)
        assert (
            images.get(
                "/api/integrity/report", params={"cursor": "../x"}, headers=operator
            ).status_code
            == 400
        )
        del sound


def test_storage_usage_per_kind_and_line(isolated_store: IsolatedStore) -> None:
    store = isolated_store
    store.start_catalog()
    store.start_images()
    line = store.token(Role.LINE)
    operator = store.token(Role.OPERATOR)
    uploads: list[tuple[str, str, dict[str, Any]]] = []
    with store.client() as images, store.client(store.catalog.url) as catalog:
        for seed, kind, line_id in (
            (31, "master", ""),
            (32, "capture", "line-1"),
            (33, "capture", "line-1"),
            (34, "capture", "line-2"),
        ):
            answer = images.post(
                "/api/images",
                params={"kind": kind, "line_id": line_id},
                content=make_image(seed=seed),
                headers=line,
            )
            assert answer.status_code == 201
            uploads.append((kind, line_id, answer.json()))

        def usage() -> dict[str, Any]:
            found: dict[str, Any] = catalog.get("/api/storage/usage", headers=operator).json()
            return found

        eventually("all counted", lambda: usage()["total"]["objects"] == 4 + 8)
        found = usage()
        thumb_bytes = sum(t["bytes"] for _, _, u in uploads for t in u["thumbnails"])
        assert thumb_bytes > 0
        assert found["kinds"]["master"] == {"bytes": uploads[0][2]["size"], "objects": 1}
        assert found["kinds"]["capture"] == {
            "bytes": sum(u["size"] for k, _, u in uploads if k == "capture"),
            "objects": 3,
        }
        assert found["kinds"]["thumbnail"] == {"bytes": thumb_bytes, "objects": 8}
        lines = {entry["line_id"]: entry for entry in found["lines"]}
        assert set(lines) == {"", "line-1", "line-2"}
        assert lines["line-1"]["kinds"]["capture"] == {
            "bytes": uploads[1][2]["size"] + uploads[2][2]["size"],
            "objects": 2,
        }
        assert lines["line-2"]["total"]["objects"] == 3  # the capture and its 2 thumbnails
        # Deleting an image takes it out of the count.
        sha = uploads[3][2]["sha256"]
        assert images.delete(f"/api/images/{sha}", headers=store.admin).status_code == 204
        eventually("deletion counted", lambda: usage()["total"]["objects"] == 3 + 6)
        assert catalog.get("/api/storage/usage", headers=line).status_code == 403


def test_usage_is_routed_through_the_gateway(gateway: httpx.Client, admin_token: str) -> None:
    answer = gateway.get("/api/storage/usage", headers={"Authorization": f"Bearer {admin_token}"})
    assert answer.status_code == 200
    assert set(answer.json()["kinds"]) == {"master", "capture", "overlay", "thumbnail"}


def test_object_store_outage_keeps_cached_thumbnails_and_leaves_nothing_half_written(
    isolated_store: IsolatedStore,
) -> None:
    store = isolated_store
    e = store.platform.endpoints
    host, port = e.s3_endpoint.split(":")
    proxy = CuttableProxy(host, int(port))
    store.start_catalog()
    # Time-to-live 0: every cached thumbnail is re-validated, so the outage path is the one
    # serving it.
    store.start_images(IMAGES_S3_ENDPOINT=proxy.endpoint, IMAGES_THUMBNAIL_CACHE_TTL_S="0")
    engineer = store.token(Role.ENGINEER)
    try:
        with store.client() as images, store.client(store.catalog.url) as catalog:
            shown = images.post("/api/images", content=make_image(seed=41), headers=engineer)
            sha = shown.json()["sha256"]
            before = images.get(
                f"/api/images/{sha}/thumbnail", params={"size": 256}, headers=engineer
            )
            assert before.status_code == 200

            proxy.cut()
            during = images.get(
                f"/api/images/{sha}/thumbnail", params={"size": 256}, headers=engineer
            )
            assert during.status_code == 200
            assert during.content == before.content
            never_seen = images.get(
                f"/api/images/{sha}/thumbnail", params={"size": 1024}, headers=engineer
            )
            assert never_seen.status_code == 503
            data = make_image(seed=42)
            refused = images.post("/api/images", content=data, headers=engineer)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            proxy.restore()

            # Nothing of the refused upload exists, and it goes through now.
            missing = hashlib.sha256(data).hexdigest()
            for key in (storage.blob_key(missing), storage.status_key(missing)):
                assert not s3kit.exists(store.s3, store.bucket, key)
            assert images.post("/api/images", content=data, headers=engineer).status_code == 201

            # An upload stopped between the blob and its thumbnails (the blob alone is there):
            # sending it again finishes it — thumbnails, status and the announcement.
            half = make_image(seed=43)
            half_sha = hashlib.sha256(half).hexdigest()
            store.s3.put_object(
                store.bucket,
                storage.blob_key(half_sha),
                io.BytesIO(half),
                len(half),
                content_type="image/png",
                metadata={"width": "128", "height": "96", "kind": "master", "upload-id": "x"},
            )
            healed = images.post("/api/images", content=half, headers=engineer)
            assert healed.status_code == 200
            assert healed.json()["duplicate"] is True
            assert len(healed.json()["thumbnails"]) == 2
            state = images.get(f"/api/images/{half_sha}/status", headers=engineer).json()
            assert state["state"] == "done"
            eventually("announced", lambda: record(catalog, engineer, half_sha) is not None)
    finally:
        proxy.close()
    stored = [
        event["sha256"] for event in events(store.nats, store.namespace, subjects.IMAGES_STORED)
    ]
    assert missing in stored
    assert half_sha in stored
