"""Deletion and garbage collection against a catalog and images service of the test's own:
a referenced image is refused (409) unless an admin forces it; the collector takes only
unreferenced blobs older than the grace period; and a collection racing program saves never
deletes a blob a saved revision references."""

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

from loupe_images.images import storage
from loupe_shared.contracts import subjects
from loupe_shared.kit import s3 as s3kit
from loupe_shared.kit.auth import Role
from tests.catalog.helpers import new_program
from tests.databases import sql
from tests.images.conftest import IsolatedStore
from tests.images.helpers import events, make_image, record, upload
from tests.support import eventually


def test_delete_refused_while_referenced_unless_an_admin_forces(
    isolated_store: IsolatedStore,
) -> None:
    store = isolated_store
    store.start_catalog()
    store.start_images()
    engineer = store.token(Role.ENGINEER)
    with store.client() as images, store.client(store.catalog.url) as catalog:
        free = upload(images, engineer, seed=1)
        used = upload(images, engineer, seed=2)
        program = catalog.post(
            "/api/programs", json=new_program(master_image_sha256=used), headers=engineer
        )
        assert program.status_code == 201, program.text

        # Unreferenced: deleted with its thumbnails; the catalog forgets it; uploadable again.
        assert images.delete(f"/api/images/{free}", headers=engineer).status_code == 204
        assert images.get(f"/api/images/{free}", headers=engineer).status_code == 404
        left = list(storage.listing(store.s3, store.bucket, f"thumbnails/{free[:2]}/{free}/"))
        assert left == []
        assert not s3kit.exists(store.s3, store.bucket, storage.status_key(free))
        eventually("record dropped", lambda: record(catalog, engineer, free) is None)
        again = images.post("/api/images", content=make_image(seed=1), headers=engineer)
        assert again.status_code == 201
        assert again.json()["duplicate"] is False
        eventually("record back", lambda: record(catalog, engineer, free) is not None)

        # Referenced: 409 naming the program, nothing removed.
        refused = images.delete(f"/api/images/{used}", headers=engineer)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["references"][0]["program_id"] == program.json()["id"]
        assert images.get(f"/api/images/{used}", headers=engineer).status_code == 200
        assert s3kit.exists(store.s3, store.bucket, storage.status_key(used))

        # Force is for admins only.
        forced = images.delete(f"/api/images/{used}?force=true", headers=engineer)
        assert forced.status_code == 403
        assert images.get(f"/api/images/{used}", headers=engineer).status_code == 200
        forced = images.delete(f"/api/images/{used}?force=true", headers=store.admin)
        assert forced.status_code == 204, forced.text
        assert images.get(f"/api/images/{used}", headers=engineer).status_code == 404
        # The record stays for the revisions that name it, marked deleted; a new save
        # referencing it is told to upload the image first.
        eventually(
            "record marked deleted",
            lambda: (record(catalog, engineer, used) or {}).get("deleted_at") is not None,
        )
        save = catalog.post(
            "/api/programs", json=new_program(master_image_sha256=used), headers=engineer
        )
        assert save.status_code == 422, save.text

        # Unknown image: 404; bad hash: 422.
        assert images.delete(f"/api/images/{'0' * 64}", headers=engineer).status_code == 404
        assert images.delete("/api/images/xyz", headers=engineer).status_code == 422
        # A viewer may not delete.
        viewer = store.token(Role.VIEWER)
        assert images.delete(f"/api/images/{free}", headers=viewer).status_code == 403

    deleted = events(store.nats, store.namespace, subjects.IMAGES_DELETED)
    assert [(e["sha256"], e["forced"]) for e in deleted] == [(free, False), (used, True)]
    audited = "SELECT action FROM audit_log WHERE target LIKE 'image:%' AND action LIKE '%delete'"
    database = store.catalog.env["CATALOG_DB_NAME"]
    eventually("deletions audited", lambda: len(sql(store.platform, database, audited)) == 2)
    actions = sorted(row["action"] for row in sql(store.platform, database, audited))
    assert actions == ["images.delete", "images.force_delete"]


def test_collection_takes_only_old_unreferenced_blobs(isolated_store: IsolatedStore) -> None:
    store = isolated_store
    store.start_catalog()
    store.start_images()
    engineer = store.token(Role.ENGINEER)
    operator = store.token(Role.OPERATOR)
    with store.client() as images, store.client(store.catalog.url) as catalog:
        kept = upload(images, engineer, seed=3)
        garbage = upload(images, engineer, seed=4)
        saved = catalog.post(
            "/api/programs", json=new_program(master_image_sha256=kept), headers=engineer
        )
        assert saved.status_code == 201

        # Too young for the default grace period: nothing goes.
        young = images.post("/api/images/gc", headers=operator)
        assert young.status_code == 200, young.text
        assert young.json()["collected"] == 0
        # A dry run says what would go, and removes nothing.
        dry = images.post(
            "/api/images/gc", params={"grace_s": 0, "dry_run": True}, headers=operator
        )
        assert dry.json()["collected_sha256"] == [garbage]
        assert dry.json()["referenced"] == 1
        assert images.get(f"/api/images/{garbage}", headers=engineer).status_code == 200
        # Engineers may not run it.
        assert images.post("/api/images/gc", headers=engineer).status_code == 403

        done = images.post("/api/images/gc", params={"grace_s": 0}, headers=operator).json()
        assert done["collected_sha256"] == [garbage]
        assert done["collected_bytes"] > 0
        assert images.get(f"/api/images/{garbage}", headers=engineer).status_code == 404
        assert images.get(f"/api/images/{kept}", headers=engineer).status_code == 200
        eventually("record dropped", lambda: record(catalog, engineer, garbage) is None)

        metrics = images.get("/metrics", headers=store.admin).text
        assert 'images_deleted_total{reason="gc"} 1.0' in metrics


def test_collection_finishes_a_deletion_stopped_midway(isolated_store: IsolatedStore) -> None:
    """A deleter that claimed an image and stopped before announcing leaves a claim; saves
    referencing the image are refused meanwhile, and the next collection finishes it."""
    store = isolated_store
    store.start_catalog()
    store.start_images()
    engineer = store.token(Role.ENGINEER)
    database = store.catalog.env["CATALOG_DB_NAME"]
    with store.client() as images, store.client(store.catalog.url) as catalog:
        sha = upload(images, engineer, seed=5)
        eventually("record", lambda: record(catalog, engineer, sha) is not None)
        # The claim as the catalog grants it, with the deleter gone before removing anything.
        claim = (
            "INSERT INTO image_tombstones (sha256, claimed_at, reason, claimed_by) "
            "VALUES ('{}', now() - interval '10 minutes', 'delete', 'images@gone')"
        )
        sql(store.platform, database, claim.format(sha))
        refused = catalog.post(
            "/api/programs", json=new_program(master_image_sha256=sha), headers=engineer
        )
        assert refused.status_code == 409, refused.text
        assert "being deleted" in refused.json()["detail"]

        done = images.post("/api/images/gc", params={"grace_s": 86400}, headers=store.admin).json()
        assert done["resumed"] == [sha]
        assert images.get(f"/api/images/{sha}", headers=engineer).status_code == 404
        eventually(
            "claim released",
            lambda: not sql(store.platform, database, "SELECT 1 FROM image_tombstones"),
        )


def test_a_collection_racing_program_saves_never_deletes_a_referenced_blob(
    isolated_store: IsolatedStore,
) -> None:
    store = isolated_store
    store.start_catalog()
    store.start_images()
    engineer = store.token(Role.ENGINEER)
    count = 40
    with store.client() as images, store.client(store.catalog.url) as catalog:
        shas = [upload(images, engineer, seed=100 + i) for i in range(count)]
        eventually(
            "records",
            lambda: all(record(catalog, engineer, sha) is not None for sha in shas),
            timeout_s=30,
        )
        start = threading.Barrier(3)
        saved: list[str] = []
        refused: list[int] = []

        def save_all(part: list[str]) -> None:
            with store.client(store.catalog.url) as client:
                start.wait()
                for sha in part:
                    answer = client.post(
                        "/api/programs",
                        json=new_program(master_image_sha256=sha),
                        headers=engineer,
                    )
                    if answer.status_code == 201:
                        saved.append(sha)
                    else:
                        refused.append(answer.status_code)

        def collect() -> list[str]:
            gone: list[str] = []
            with store.client() as client:
                start.wait()
                while len(gone) + len(saved) < count:
                    answer = client.post(
                        "/api/images/gc", params={"grace_s": 0}, headers=store.admin
                    )
                    assert answer.status_code == 200, answer.text
                    gone += answer.json()["collected_sha256"]
            return gone

        with ThreadPoolExecutor(3) as pool:
            savers = [pool.submit(save_all, shas[0::2]), pool.submit(save_all, shas[1::2])]
            collector = pool.submit(collect)
            for future in savers:
                future.result()
            collected = collector.result()

        # Every save either succeeded or was refused with a clear 4xx, never a 500.
        assert set(refused) <= {409, 422}
        assert len(saved) + len(refused) == count
        # Every image is either referenced and present, or collected — never both.
        assert not set(saved) & set(collected)
        for sha in saved:
            blob = images.head(f"/api/images/{sha}", headers=engineer)
            assert blob.status_code == 200, sha
            body = images.get(f"/api/images/{sha}", headers=engineer).content
            assert hashlib.sha256(body).hexdigest() == sha
