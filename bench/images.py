"""Images, on 12-megapixel JPEGs (4000 x 3000, quality 90, photo-like):

1. uploads through the gateway at concurrency 4, next to a bare S3 put of the same bytes plus
   one reduced decode and the WebP thumbnails, also at concurrency 4;
2. thumbnail generation alone (`thumbnails.make`), next to a naive full decode and resize;
3. 256 px thumbnail GETs through the gateway at concurrency 16, next to a bare S3 GET (a
   presigned URL, so the same load generator drives both) of the same objects."""

import io
import queue
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
from minio import Minio

from bench import buckets, loadgen
from loupe_images.images import storage, thumbnails
from loupe_stack.stack import Stack

WIDTH, HEIGHT = 4000, 3000
JPEG_QUALITY = 90
WEBP_QUALITY = 80  # what thumbnails.make uses
SCENES = 4
WARM_UPS = 4
UPLOADS = 60
ROUNDS = 3
UPLOAD_CONCURRENCY = 4
THUMBNAIL_IMAGES = 12
GET_IMAGES = 8
GET_SIZE = 256
GET_CONCURRENCY = 16
GET_DURATION_S = 8.0
_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


# --- the images -----------------------------------------------------------------------------


def _scene(seed: int) -> Any:
    """A photo-like frame: smooth lighting gradients, a low-frequency pattern, filled shapes
    with soft edges, and sensor-like noise (so the JPEG has a realistic 3-4 MB of detail)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None]
    planes = []
    for channel in range(3):
        a, b = rng.uniform(-70, 70, 2)
        fx, fy = rng.uniform(8, 40, 2)
        plane = 128 + a * (x - 0.5) + b * (y - 0.5) + 25 * np.sin(x * fx + channel) * np.cos(y * fy)
        planes.append(np.clip(plane, 0, 255).astype(np.uint8))
    image = cv2.merge(planes)
    for _ in range(60):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        if rng.random() < 0.5:
            radius = int(rng.integers(20, 400))
            cv2.circle(image, (x0, y0), radius, color, -1, cv2.LINE_AA)
        else:
            x1, y1 = x0 + int(rng.integers(20, 700)), y0 + int(rng.integers(20, 500))
            cv2.rectangle(image, (x0, y0), (x1, y1), color, -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    noise = rng.standard_normal((HEIGHT, WIDTH), dtype=np.float32) * 6.0
    noisy = image.astype(np.float32) + noise[:, :, None]
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _photos(count: int) -> list[bytes]:
    """`count` distinct JPEGs: a few scenes, each copy with its own mark, so no two uploads
    have the same bytes (the images service stores identical bytes once)."""
    scenes = [_scene(seed) for seed in range(SCENES)]
    photos = []
    for i in range(count):
        frame = scenes[i % SCENES].copy()
        x, y = 200 + (i * 173) % (WIDTH - 800), 200 + (i * 97) % (HEIGHT - 400)
        cv2.rectangle(frame, (x, y), (x + 520, y + 140), (20, 20, 20), -1)
        cv2.putText(frame, f"part {i:04d}", (x + 20, y + 100), 0, 3.0, (230, 230, 230), 6)
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        photos.append(encoded.tobytes())
    if len(set(photos)) != count:
        raise RuntimeError("the generated JPEGs are not all distinct")
    return photos


# --- measuring ------------------------------------------------------------------------------


def _percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100)
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
    }


class _Run:
    """Samples and wall time accumulated over the rounds of one case."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.elapsed = 0.0

    def add(self, work: Callable[[int, bytes], None], payloads: list[bytes]) -> None:
        """Every payload through `work` on UPLOAD_CONCURRENCY threads (a closed loop: each
        thread takes the next payload when its previous one is done)."""

        def timed(item: tuple[int, bytes]) -> None:
            started = time.perf_counter()
            work(*item)
            self.samples.append(time.perf_counter() - started)

        started = time.perf_counter()
        with ThreadPoolExecutor(UPLOAD_CONCURRENCY) as pool:
            list(pool.map(timed, enumerate(payloads)))
        self.elapsed += time.perf_counter() - started

    def figures(self) -> dict[str, Any]:
        return {
            "uploads": len(self.samples),
            "concurrency": UPLOAD_CONCURRENCY,
            "uploads_per_s": round(len(self.samples) / self.elapsed, 2),
            **_percentiles(self.samples),
        }


def _encode_sizes(image: Any) -> None:
    for size in thumbnails.SIZES:
        h, w = image.shape[:2]
        scale = size / max(w, h)
        resized = cv2.resize(
            image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )
        ok, _ = cv2.imencode(".webp", resized, [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY])
        if not ok:
            raise RuntimeError("WebP encoding failed")


def _bare_thumbnails(data: bytes) -> None:
    """The least an upload must do besides storing: one reduced decode, then each size."""
    factor = thumbnails.reduction_for(WIDTH, HEIGHT, max(thumbnails.SIZES))
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED[factor])
    if image is None:
        raise RuntimeError("decode failed")
    _encode_sizes(image)


def _naive_thumbnails(data: bytes) -> None:
    """The obvious way: a full-resolution decode, then a resize of it per size."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError("decode failed")
    _encode_sizes(image)


def _upload_rows(
    stack: Stack, s3: Minio, photos: list[bytes]
) -> tuple[list[dict[str, Any]], list[str]]:
    scratch = f"bench-scratch-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(scratch)
    buckets.first_write(s3, scratch)

    def bare(i: int, data: bytes) -> None:
        key = f"bench/{uuid.uuid4().hex}-{i}"
        s3.put_object(scratch, key, io.BytesIO(data), len(data), content_type="image/jpeg")
        _bare_thumbnails(data)

    clients: queue.Queue[httpx.Client] = queue.Queue()
    for _ in range(UPLOAD_CONCURRENCY):
        clients.put(
            httpx.Client(
                base_url=stack.gateway_url,
                headers={"Authorization": f"Bearer {stack.admin_token}"},
                timeout=120.0,
            )
        )
    stored: list[str] = []

    def upload(_: int, data: bytes) -> None:
        client = clients.get()
        try:
            answer = client.post(
                "/api/images",
                params={"kind": "capture"},
                content=data,
                headers={"Content-Type": "image/jpeg"},
            )
        finally:
            clients.put(client)
        if answer.status_code != 201:
            raise RuntimeError(f"upload answered {answer.status_code}: {answer.text[:300]}")
        body = answer.json()
        sizes = [t["size"] for t in body["thumbnails"]] + body["thumbnails_pending"]
        if body["duplicate"] or sorted(sizes) != sorted(thumbnails.SIZES):
            raise RuntimeError(f"unexpected upload answer: {body}")
        stored.append(body["sha256"])

    def settle(shas: list[str]) -> float:
        """Seconds until the large thumbnails that followed these uploads' answers are all
        stored: a GET of one waits for it. Afterwards the next round starts on an idle
        service, so no work of this round is done in the next one's time."""
        started = time.perf_counter()
        client = clients.get()
        try:
            for sha in shas:
                client.get(
                    f"/api/images/{sha}/thumbnail", params={"size": max(thumbnails.SIZES)}
                ).raise_for_status()
        finally:
            clients.put(client)
        return time.perf_counter() - started

    warm, measured = photos[:WARM_UPS], photos[WARM_UPS:]
    per_round = len(measured) // ROUNDS
    baseline, loupe = _Run(), _Run()
    settling = 0.0
    try:
        _Run().add(bare, warm)
        _Run().add(upload, warm)
        settle(stored)
        # Alternating rounds, so a slow spell of the machine (or the S3 server) hits both.
        for r in range(ROUNDS):
            chunk = measured[r * per_round : (r + 1) * per_round]
            baseline.add(bare, chunk)
            before = len(stored)
            loupe.add(upload, chunk)
            settling += settle(stored[before:])
    finally:
        while not clients.empty():
            clients.get().close()
    mean_mb = round(sum(map(len, measured)) / len(measured) / 1e6, 2)
    rows = [
        {
            "bench": "images",
            "case": "bare S3 put + reduced decode + WebP 1024/256 (baseline)",
            "jpeg_mb": mean_mb,
            **baseline.figures(),
        },
        {
            "bench": "images",
            "case": "12 MP JPEG upload through the gateway",
            "jpeg_mb": mean_mb,
            **loupe.figures(),
        },
    ]
    rows[1]["throughput_vs_baseline"] = round(
        rows[1]["uploads_per_s"] / rows[0]["uploads_per_s"], 2
    )
    # The same uploads, counted until their large thumbnails were stored too.
    whole = round(len(loupe.samples) / (loupe.elapsed + settling), 2)
    rows.append(
        {
            "bench": "images",
            "case": "12 MP JPEG upload, until the large thumbnails are stored too",
            "uploads_per_s": whole,
            "throughput_vs_baseline": round(whole / rows[0]["uploads_per_s"], 2),
        }
    )
    return rows, stored


def _thumbnail_rows(photos: list[bytes]) -> list[dict[str, Any]]:
    def loupe(data: bytes) -> None:
        thumbnails.make(data, WIDTH, HEIGHT)

    timings: dict[str, list[float]] = {"naive": [], "loupe": []}
    _naive_thumbnails(photos[0])  # warm-up: codec tables, thread pools
    loupe(photos[0])
    for data in photos:  # interleaved, so any drift in the machine hits both alike
        for name, make in (("naive", _naive_thumbnails), ("loupe", loupe)):
            started = time.perf_counter()
            make(data)
            timings[name].append(time.perf_counter() - started)
    figures = {
        name: {
            "images": len(samples),
            "ms_per_image": round(sum(samples) / len(samples) * 1000, 1),
            "p50_ms": round(statistics.median(samples) * 1000, 1),
        }
        for name, samples in timings.items()
    }
    return [
        {
            "bench": "images",
            "case": "naive full decode + resize to 1024/256 + WebP (baseline)",
            **figures["naive"],
        },
        {
            "bench": "images",
            "case": "thumbnails.make (one reduced decode)",
            **figures["loupe"],
            "time_vs_baseline": round(
                figures["loupe"]["ms_per_image"] / figures["naive"]["ms_per_image"], 2
            ),
        },
    ]


def _get_rows(stack: Stack, s3: Minio, shas: list[str]) -> list[dict[str, Any]]:
    bucket = stack.settings.images_bucket
    presigned = []
    for sha in shas:
        parts = urlsplit(
            s3.presigned_get_object(
                bucket, storage.thumbnail_key(sha, GET_SIZE), expires=timedelta(hours=1)
            )
        )
        presigned.append(f"{parts.path}?{parts.query}")
    s3_url = f"http://{stack.endpoints.s3_endpoint}"
    gateway_paths = [f"/api/images/{sha}/thumbnail?size={GET_SIZE}" for sha in shas]
    token = {"Authorization": f"Bearer {stack.admin_token}"}
    # Both paths must answer the same WebP bytes, or the comparison means nothing.
    sizes = []
    for bare_path, loupe_path in zip(presigned, gateway_paths, strict=True):
        bare = httpx.get(s3_url + bare_path)
        via_loupe = httpx.get(stack.gateway_url + loupe_path, headers=token)
        bare.raise_for_status()
        via_loupe.raise_for_status()
        if bare.content != via_loupe.content or not bare.content.startswith(b"RIFF"):
            raise RuntimeError("the bare and the gateway thumbnail differ")
        sizes.append(len(bare.content))
    thumbnail_kb = round(sum(sizes) / len(sizes) / 1000, 1)
    rng = np.random.default_rng(0)

    def pick(paths: list[str]) -> Callable[[], str]:
        return lambda: paths[int(rng.integers(0, len(paths)))]

    cases: list[tuple[str, str, Callable[[], str], dict[str, str]]] = [
        (
            "bare S3 GET of the 256 px thumbnail (baseline)",
            s3_url,
            pick(presigned),
            {},
        ),
        (
            "256 px thumbnail GET through the gateway",
            stack.gateway_url,
            pick(gateway_paths),
            token,
        ),
        (
            # The images service alone, as the object store is asked in the baseline: what
            # the service costs without the gateway's hop (`bench gateway` measures that).
            "256 px thumbnail GET straight to the images service",
            stack.service_url("images"),
            pick(gateway_paths),
            token,
        ),
    ]
    rows: list[dict[str, Any]] = []
    for case, base_url, path_for, headers in cases:
        figures = loadgen.measure(
            path_for, base_url, headers, concurrency=GET_CONCURRENCY, duration_s=GET_DURATION_S
        )
        rows.append({"bench": "images", "case": case, "thumbnail_kb": thumbnail_kb, **figures})
    for row in rows[1:]:
        row["throughput_vs_baseline"] = round(row["req_per_s"] / rows[0]["req_per_s"], 2)
    return rows


def bench_images(stack: Stack) -> list[dict[str, Any]]:
    s3 = stack.endpoints.s3()
    photos = _photos(WARM_UPS + UPLOADS)
    rows, stored = _upload_rows(stack, s3, photos)
    rows += _thumbnail_rows(photos[WARM_UPS : WARM_UPS + THUMBNAIL_IMAGES])
    rows += _get_rows(stack, s3, stored[:GET_IMAGES])
    return rows
