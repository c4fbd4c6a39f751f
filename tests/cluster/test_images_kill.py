"""Image uploads through the gateway while the images process taking some of them is killed:
every upload answered 201 is readable byte-identical; every other got an error a client
retries (a 502/503 problem or a cut connection), and the retry is stored."""

import hashlib
import threading
import time
from collections import Counter

import httpx

from loupe_stack.stack import Stack
from tests.conftest import auth
from tests.images.helpers import make_image
from tests.support import eventually

UPLOADS = 80
RETRYABLE = {502, 503, 504}
CAPTURE = {"kind": "capture"}


def test_uploads_through_a_killed_images_replica_are_stored_or_retryable(
    cluster: Stack,
) -> None:
    headers = {**auth(cluster.admin_token), "Content-Type": "image/png"}
    images = [make_image(seed=7_000 + n, size=(256, 256)) for n in range(UPLOADS)]
    answers: dict[int, int | str] = {}
    lock = threading.Lock()

    def uploader(offset: int) -> None:
        with httpx.Client(base_url=cluster.gateway_url, timeout=60) as client:
            for n in range(offset, UPLOADS, 2):
                try:
                    status: int | str = client.post(
                        "/api/images",
                        params={"kind": "capture"},
                        content=images[n],
                        headers=headers,
                    ).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                with lock:
                    answers[n] = status

    threads = [threading.Thread(target=uploader, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    eventually("a quarter answered", lambda: len(answers) >= UPLOADS // 4, timeout_s=120)
    victim = cluster.replicas["images"][0]
    cluster.kill(victim)
    killed_at = time.monotonic()
    for thread in threads:
        thread.join(300)
    cluster.revive(victim)
    cluster.wait_service_ready("images", 1)

    tally = Counter(answers.values())
    stored = [n for n, status in answers.items() if status == 201]
    failed = [n for n, status in answers.items() if status != 201]
    print(f"\ncluster uploads: {dict(tally)} (an images process killed mid-way)")
    assert len(answers) == UPLOADS
    assert all(
        status in RETRYABLE or isinstance(status, str)
        for n, status in answers.items()
        if n in failed
    ), tally
    with httpx.Client(base_url=cluster.gateway_url, timeout=60) as client:
        for n in stored:
            sha = hashlib.sha256(images[n]).hexdigest()
            back = client.get(f"/api/images/{sha}", headers=auth(cluster.admin_token))
            assert back.status_code == 200, (n, back.text)
            assert back.content == images[n]
        # The client retries what failed: each is then stored.
        for n in failed:
            retried = client.post("/api/images", params=CAPTURE, content=images[n], headers=headers)
            assert retried.status_code in (200, 201), retried.text
    print(f"cluster uploads: replica back {time.monotonic() - killed_at:.1f} s after the kill")
