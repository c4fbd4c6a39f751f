"""A save right after an upload succeeds even when the `images.stored` event has not reached
the catalog: the catalog asks the images service."""

import hashlib

import httpx

from tests.catalog.conftest import IsolatedCatalog
from tests.catalog.helpers import new_program, random_sha
from tests.conftest import auth
from tests.images.helpers import make_image


def test_unknown_image_is_looked_up_in_the_images_service(
    isolated_catalog: IsolatedCatalog, gateway: httpx.Client, admin_token: str
) -> None:
    # The isolated catalog listens to its own namespace: no images.stored ever reaches it.
    data = make_image(".jpg", seed=99)
    sha = hashlib.sha256(data).hexdigest()
    gateway.post("/api/images", content=data, headers=auth(admin_token)).raise_for_status()
    catalog = isolated_catalog.start()
    try:
        created = httpx.post(
            f"{isolated_catalog.url}/api/programs",
            json=new_program(master_image_sha256=sha),
            headers=auth(admin_token),
            timeout=15,
        )
        assert created.status_code == 201, created.text
        record = httpx.get(
            f"{isolated_catalog.url}/api/image-records/{sha}", headers=auth(admin_token)
        ).json()
        assert record["source"] == "images-service"
        assert (record["width"], record["height"], record["content_type"]) == (
            128,
            96,
            "image/jpeg",
        )

        unknown = httpx.post(
            f"{isolated_catalog.url}/api/programs",
            json=new_program(master_image_sha256=random_sha()),
            headers=auth(admin_token),
            timeout=15,
        )
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["field"] == "body:master_image_sha256"
    finally:
        catalog.stop()


def test_images_service_down_is_a_503_not_a_500(
    isolated_catalog: IsolatedCatalog, admin_token: str
) -> None:
    isolated_catalog.env["CATALOG_IMAGES_URL"] = "http://127.0.0.1:9"  # nothing listens there
    catalog = isolated_catalog.start()
    try:
        answer = httpx.post(
            f"{isolated_catalog.url}/api/programs",
            json=new_program(master_image_sha256=random_sha()),
            headers=auth(admin_token),
            timeout=15,
        )
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
    finally:
        catalog.stop()
