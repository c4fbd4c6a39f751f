"""With the object store down, uploads answer 503 with Retry-After (never a 500) and the
service stays up; readiness says why."""

import subprocess
import sys
from pathlib import Path

import httpx

from loupe_stack.processes import free_port, http_ok, wait_until
from loupe_stack.stack import Stack
from tests.conftest import auth
from tests.images.helpers import make_image


def test_object_store_down_is_503_with_retry_after(
    platform: Stack, admin_token: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **platform.service_env("images"),
        "IMAGES_PORT": str(port),
        "IMAGES_S3_ENDPOINT": f"127.0.0.1:{free_port()}",  # nothing listens there
    }
    with (
        (tmp_path / "images.log").open("w") as log,
        subprocess.Popen(
            [sys.executable, "-m", "loupe_images"], env=env, stdout=log, stderr=subprocess.STDOUT
        ) as proc,
    ):
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until("images", lambda: http_ok(f"{url}/healthz"), None, 30)
            upload = httpx.post(
                f"{url}/api/images",
                content=make_image(seed=11),
                headers=auth(admin_token),
                timeout=30,
            )
            assert upload.status_code == 503, upload.text
            assert upload.headers["retry-after"] == "5"
            assert upload.headers["content-type"] == "application/problem+json"
            read = httpx.get(
                f"{url}/api/images/{'a' * 64}/metadata", headers=auth(admin_token), timeout=30
            )
            assert read.status_code == 503
            ready = httpx.get(f"{url}/readyz", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["checks"]["object_store"]["ok"] is False
            assert httpx.get(f"{url}/healthz").status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=20)
