"""Legacy migration, on programs with a 3 MB JPEG master image each (as the old frontend held
them: base64 `data:` URLs in the export):

1. one export of BATCH programs applied through the gateway (`POST /api/migrations/legacy?
   dry_run=false`): seconds per program, end to end — parse, decode, existence check, upload
   through the images service (decode check, thumbnails), program creation, read-back;
2. SINGLES exports of one program each: the latency a person migrating one program sees;
3. for comparison, SINGLES of the same kind of image uploaded straight to the images API;

next to the raw baseline: a bare S3 put of the same image bytes, one after the other."""

import base64
import io
import json
import statistics
import time
import uuid
from typing import Any

import cv2
import httpx
import numpy as np

from bench import buckets
from loupe_stack.stack import Stack

WIDTH, HEIGHT = 2450, 1840  # about 3 MB as a quality-95 JPEG of a noisy frame
BATCH = 10
SINGLES = 5


def _photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)[None, :, None]
    frame = np.full((HEIGHT, WIDTH, 3), 128.0, dtype=np.float32) + 60.0 * (x - 0.5)
    frame += rng.standard_normal((HEIGHT, WIDTH, 3), dtype=np.float32) * 20.0
    ok, encoded = cv2.imencode(
        ".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def _program(image: bytes) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    return {
        "id": f"prog_bench_{tag}",
        "name": f"Bench {tag}",
        "createdAt": "2025-10-01T08:00:00.000Z",
        "updatedAt": "2025-10-01T09:30:00.000Z",
        "config": {
            "masterImage": "data:image/jpeg;base64," + base64.b64encode(image).decode(),
            "tools": [
                {
                    "id": "tool_0",
                    "type": "diff",
                    "name": "Check",
                    "roi": {"x": 10, "y": 10, "width": 200, "height": 100},
                    "threshold": 30,
                    "minDefectArea": 20,
                }
            ],
            "triggerMode": "internal",
            "exposure": 100,
        },
    }


def _apply(client: httpx.Client, programs: list[dict[str, Any]]) -> float:
    body = json.dumps(programs).encode()
    started = time.perf_counter()
    answer = client.post(
        "/api/migrations/legacy",
        params={"dry_run": "false"},
        content=body,
        headers={"Content-Type": "application/json"},
    )
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    imported = answer.json()["totals"]["imported"]
    if imported != len(programs):
        raise RuntimeError(f"imported {imported} of {len(programs)}: {answer.text[:500]}")
    return elapsed


def _bare_puts(stack: Stack, images: list[bytes]) -> list[float]:
    s3 = stack.endpoints.s3()
    bucket = f"bench-legacy-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    buckets.first_write(s3, bucket)
    samples = []
    for i, data in enumerate(images):
        started = time.perf_counter()
        s3.put_object(bucket, f"bench/{i}", io.BytesIO(data), len(data), content_type="image/jpeg")
        samples.append(time.perf_counter() - started)
    return samples


def _uploads(client: httpx.Client, images: list[bytes]) -> list[float]:
    """The same images uploaded straight to the images service's API (through the gateway):
    the part of a migration that is decoding, checking and thumbnailing the image."""
    samples = []
    for data in images:
        started = time.perf_counter()
        answer = client.post("/api/images", content=data, headers={"Content-Type": "image/jpeg"})
        samples.append(time.perf_counter() - started)
        answer.raise_for_status()
    return samples


def bench_legacy(stack: Stack) -> list[dict[str, Any]]:
    images = [_photo(seed) for seed in range(BATCH + 2 * SINGLES + 1)]
    mean_mb = round(statistics.mean(len(i) for i in images) / 1e6, 2)
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=300) as client:
        _apply(client, [_program(images[-1])])  # warm up connections and caches
        batch_s = _apply(client, [_program(image) for image in images[:BATCH]])
        singles = [_apply(client, [_program(image)]) for image in images[BATCH : BATCH + SINGLES]]
        uploads = _uploads(client, images[BATCH + SINGLES : -1])
    bare = _bare_puts(stack, images[: BATCH + SINGLES])
    bare_p50 = statistics.median(bare)
    per_program = batch_s / BATCH
    return [
        {
            "bench": "legacy",
            "case": "bare S3 put of the image bytes (baseline)",
            "image_mb": mean_mb,
            "puts": len(bare),
            "p50_ms": round(bare_p50 * 1000, 1),
        },
        {
            "bench": "legacy",
            "case": f"one export of {BATCH} programs through the gateway",
            "image_mb": mean_mb,
            "s_per_program": round(per_program, 3),
            "ratio_to_bare_put": round(per_program / bare_p50, 1),
        },
        {
            "bench": "legacy",
            "case": "exports of one program through the gateway",
            "image_mb": mean_mb,
            "runs": len(singles),
            "p50_ms": round(statistics.median(singles) * 1000, 1),
            "max_ms": round(max(singles) * 1000, 1),
            "ratio_to_bare_put": round(statistics.median(singles) / bare_p50, 1),
        },
        {
            "bench": "legacy",
            "case": "the image alone uploaded through the gateway (part of the above)",
            "image_mb": mean_mb,
            "uploads": len(uploads),
            "p50_ms": round(statistics.median(uploads) * 1000, 1),
            "ratio_to_bare_put": round(statistics.median(uploads) / bare_p50, 1),
        },
    ]
