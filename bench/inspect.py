"""Inspection, on 5 MP and 12 MP captures (JPEG, quality 92) of parts from the scikit-image
suite's held-out seeds (the tests never read them):

1. the bare OpenCV pipeline in this process, one thread: decode, reduced-scale ECC, warp,
   absolute difference, threshold, connected components — the raw baseline;
2. Loupe end to end: requests published on `inspection.requested`, worker processes (one
   inspection thread and one OpenCV thread each, so one core; two requests in flight, so the
   next capture loads while one is inspected) loading the capture from the object store,
   inspecting it with the program's tools and publishing the result; timed from the first
   publish to the last result received;
3. the pipeline's accuracy on the held-out seeds (defects found, good parts rejected).

`python -m bench inspect`, or `python -m bench.inspect` on its own."""

import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from tests.inspect import synthetic

from loupe_inspect.pipeline.config import InspectionConfig
from loupe_inspect.pipeline.images import PreparedMaster, align_scale, decode_gray
from loupe_inspect.pipeline.run import inspect
from loupe_shared.contracts import subjects
from loupe_shared.contracts.streams import TOKENS_BUCKET
from loupe_shared.kit.auth import Role, TokenStore
from loupe_shared.kit.nats import connect, ensure_streams
from loupe_shared.kit.settings import NatsSettings
from loupe_stack.processes import ManagedProcess, free_port, http_ok, wait_until
from loupe_stack.stack import Stack

Row = dict[str, object]
SIZES = (("5 MP", (2592, 1944)), ("12 MP", (4000, 3000)))
JPEG_QUALITY = 92
BARE_ROUNDS = 6
E2E_ROUNDS = 2
REQUESTS = {"5 MP": 24, "12 MP": 12}
WORKER_COUNTS = (1, 2)
ACCURACY_CASES = 400
MAX_ALIGN_PIXELS = 400_000
NAMESPACE = "benchinspect"


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return bytes(data)


def bare(master: np.ndarray, data: bytes) -> int:
    """Decode, reduced-scale ECC, warp, difference, threshold, components: the minimum a
    golden-template inspection does. Answers the number of blobs."""
    capture = decode_gray(data)
    scale = align_scale(master.shape, 0.5, MAX_ALIGN_PIXELS)
    small_m = cv2.resize(master, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small_c = cv2.resize(capture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
    _, matrix = cv2.findTransformECC(  # type: ignore[call-overload]
        small_m, small_c, np.eye(2, 3, dtype=np.float32), cv2.MOTION_EUCLIDEAN, criteria, None, 1
    )
    matrix[:, 2] /= scale
    size = (master.shape[1], master.shape[0])
    warped = cv2.warpAffine(capture, matrix, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    _, changed = cv2.threshold(cv2.absdiff(warped, master), 30, 255, cv2.THRESH_BINARY)
    count, _, _, _ = cv2.connectedComponentsWithStats(changed)
    return int(count)


def _loupe(master: PreparedMaster, config: InspectionConfig, data: bytes) -> None:
    inspect(master, decode_gray(data), config, max_align_pixels=MAX_ALIGN_PIXELS)


def _bare_batch(master: np.ndarray, captures: list[bytes], rounds: int) -> None:
    cv2.setNumThreads(1)
    for _ in range(rounds):
        for data in captures:
            bare(master, data)


def _bare_parallel(count: int, master: np.ndarray, captures: list[bytes]) -> float:
    """Seconds per image with `count` processes running the bare pipeline side by side:
    what this machine's cores give without any of Loupe around."""
    rounds = BARE_ROUNDS
    # Spawned, not forked: a fork of a process whose OpenCV threads are running can hang.
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_bare_batch, [master] * count, [captures] * count, [1] * count))  # warm
        started = time.perf_counter()
        list(pool.map(_bare_batch, [master] * count, [captures] * count, [rounds] * count))
        seconds = time.perf_counter() - started
    return seconds / (count * rounds * len(captures))


def _mean_time(calls: Sequence[Callable[[], object]]) -> float:
    """Seconds per image over `BARE_ROUNDS` passes of the images in turn, as the requests
    come: every image counted, as the end-to-end figure counts every request (a median per
    image would drop the slow ones only on the baseline's side)."""
    started = time.perf_counter()
    for _ in range(BARE_ROUNDS):
        for call in calls:
            call()
    return (time.perf_counter() - started) / (BARE_ROUNDS * len(calls))


async def _prepare_namespace(settings: NatsSettings, admin_token: str) -> None:
    nc = await connect(settings, "bench")
    try:
        js = nc.jetstream()
        await ensure_streams(js, settings.namespace)
        tokens = TokenStore(js, subjects.stream_name(TOKENS_BUCKET, settings.namespace))
        await tokens.ensure_bucket()
        if await tokens.get(admin_token.split("_")[1]) is None:
            await tokens.create("bench-admin", Role.ADMIN, "bench", token=admin_token)
    finally:
        await nc.drain()


async def _round_trip(settings: NatsSettings, requests: list[dict[str, Any]]) -> float:
    """Publish every request, answer the seconds until the last result arrived."""
    nc = await connect(settings, "bench")
    try:
        js = nc.jetstream()
        wanted = {r["request_id"] for r in requests}
        done = asyncio.get_running_loop().create_future()
        seen: set[str] = set()

        async def on_result(message: Any) -> None:
            for result in json.loads(message.data)["results"]:
                seen.add(result.get("request_id", ""))
            if wanted <= seen and not done.done():
                done.set_result(time.perf_counter())

        await nc.subscribe(
            subjects.subject(subjects.RESULTS_RECORDED, settings.namespace), cb=on_result
        )
        started = time.perf_counter()
        subject = subjects.subject(subjects.INSPECTION_REQUESTED, settings.namespace)
        for request in requests:
            await js.publish(
                subject,
                json.dumps(request).encode(),
                headers={"Nats-Msg-Id": request["request_id"]},
            )
        finished: float = await asyncio.wait_for(done, 300)
        return finished - started
    finally:
        await nc.drain()


def _request(program_id: str, capture: str) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "line_id": "bench",
        "program_id": program_id,
        "capture_sha256": capture,
        "captured_at": datetime.now(UTC).isoformat(),
        "is_simulated": True,
    }


class _Workers:
    def __init__(self, stack: Stack, settings: NatsSettings, log_dir: Path) -> None:
        self.stack = stack
        self.settings = settings
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []

    def start(self, count: int) -> None:
        for index in range(count):
            port = free_port()
            process = ManagedProcess(
                f"inspect-bench-{index}",
                [sys.executable, "-m", "loupe_inspect"],
                env={
                    **self.stack.service_env("inspect"),
                    "INSPECT_PORT": str(port),
                    "INSPECT_NAMESPACE": self.settings.namespace,
                    "INSPECT_CATALOG_URL": self.stack.service_url("catalog"),
                    "INSPECT_CATALOG_TOKEN": self.stack.admin_token,
                    # One core's worth of OpenCV, the next request's bytes loaded meanwhile.
                    "INSPECT_CONCURRENCY": "2",
                    "INSPECT_THREADS": "1",
                    "INSPECT_OPENCV_THREADS": "1",
                    "INSPECT_LOG_LEVEL": "warning",
                },
                log_path=self.log_dir / f"inspect-bench-{index}.log",
            )
            process.start()
            self.processes.append(process)
            url = f"http://127.0.0.1:{port}/readyz"
            wait_until(process.name, partial(http_ok, url), process, 60)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()


def _upload(stack: Stack, data: bytes, kind: str, content_type: str) -> str:
    answer = httpx.post(
        f"{stack.service_url('images')}/api/images",
        params={"kind": kind},
        content=data,
        headers={"Authorization": f"Bearer {stack.admin_token}", "Content-Type": content_type},
        timeout=120,
    )
    answer.raise_for_status()
    return str(answer.json()["sha256"])


def _program(stack: Stack, config: dict[str, Any], master: str) -> str:
    answer = httpx.post(
        f"{stack.service_url('catalog')}/api/programs",
        json={
            "name": f"bench {uuid.uuid4().hex[:8]}",
            "config": config,
            "master_image_sha256": master,
        },
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=60,
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


def _size_rows(stack: Stack, settings: NatsSettings, log_dir: Path) -> list[Row]:
    rows: list[Row] = []
    cv2.setNumThreads(1)
    for index, (label, size) in enumerate(SIZES):
        good = synthetic.make_case(synthetic.HELD_OUT_SEEDS[2 * index], size=size, bad=False)
        bad = synthetic.make_case(synthetic.HELD_OUT_SEEDS[2 * index], size=size, bad=True)
        megapixels = good.master.size / 1e6
        captures = [_jpeg(good.capture), _jpeg(bad.capture)]
        config = synthetic.program_config(good.roi)

        prepared = PreparedMaster("bench", good.master)
        parsed = InspectionConfig.model_validate(config)

        loupe = partial(_loupe, prepared, parsed)
        loupe(captures[0])  # the master's reduced copy and ROI references, as in a worker

        bare_calls = [partial(bare, good.master, data) for data in captures]
        loupe_calls = [partial(loupe, data) for data in captures]
        # Measured before and after the end-to-end runs; the faster of the two is kept (a
        # neighbour's load slows one of them, never speeds it up). Each end-to-end figure is
        # the faster of two rounds likewise.
        bare_times = [_mean_time(bare_calls)]
        loupe_times = [_mean_time(loupe_calls)]
        master_sha = _upload(stack, synthetic.encode_png(good.master), "master", "image/png")
        shas = [_upload(stack, data, "capture", "image/jpeg") for data in captures]
        program_id = _program(stack, config, master_sha)
        end_to_end: list[tuple[int, float, float]] = []
        for count in WORKER_COUNTS:
            workers = _Workers(stack, settings, log_dir)
            try:
                workers.start(count)
                warm = [_request(program_id, sha) for sha in shas * count]
                asyncio.run(_round_trip(settings, warm))
                rounds = []
                for _ in range(E2E_ROUNDS):
                    requests = [
                        _request(program_id, shas[i % len(shas)]) for i in range(REQUESTS[label])
                    ]
                    rounds.append(asyncio.run(_round_trip(settings, requests)))
                seconds = min(rounds)
            finally:
                workers.stop()
            end_to_end.append((count, seconds * count / len(requests), seconds / len(requests)))
        bare_times.append(_mean_time(bare_calls))
        loupe_times.append(_mean_time(loupe_calls))
        baseline = min(bare_times)
        rows.append(
            _row(label, megapixels, "bare OpenCV pipeline, one thread (baseline)", baseline)
        )
        rows.append(
            _row(label, megapixels, "Loupe pipeline in process, one thread", min(loupe_times))
        )
        for count, per_worker, per_image in end_to_end:
            if count > 1:
                side_by_side = _bare_parallel(count, good.master, captures)
                case = f"bare OpenCV pipeline, {count} processes side by side (baseline)"
                rows.append(
                    _row(label, megapixels, case, side_by_side * count, total_s=side_by_side)
                )
            case = f"end to end through NATS and the object store, {count} worker process(es)"
            row = _row(label, megapixels, case, per_worker, total_s=per_image)
            row["vs_bare_throughput_per_worker"] = round(baseline / per_worker, 2)
            if count > 1:
                row["vs_bare_side_by_side"] = round(side_by_side / per_image, 2)
            rows.append(row)
    return rows


def _row(
    label: str, megapixels: float, case: str, seconds: float, total_s: float | None = None
) -> Row:
    row: Row = {
        "bench": "inspect",
        "size": label,
        "case": case,
        "ms_per_image": round(seconds * 1000, 1),
        "ms_per_mp": round(seconds * 1000 / megapixels, 1),
        "images_per_s_per_process": round(1 / seconds, 2),
    }
    if total_s is not None:
        row["images_per_s_total"] = round(1 / total_s, 2)
    return row


def accuracy_rows(cases: int = ACCURACY_CASES) -> list[Row]:
    counts = {"good": 0, "false_rejects": 0, "defects": 0, "found": 0}
    for seed in synthetic.HELD_OUT_SEEDS[:cases]:
        case = synthetic.make_case(seed)
        config = InspectionConfig.model_validate(synthetic.program_config(case.roi))
        outcome = inspect(
            PreparedMaster(str(seed), case.master),
            case.capture,
            config,
            max_align_pixels=MAX_ALIGN_PIXELS,
        )
        boxes = [(d.x, d.y, d.width, d.height) for d in outcome.defects if d.kind == "difference"]
        if case.good:
            counts["good"] += 1
            counts["false_rejects"] += outcome.verdict == "fail"
        else:
            counts["defects"] += len(case.defects)
            counts["found"] += sum(synthetic.found(d, boxes) for d in case.defects)
    return [
        {
            "bench": "inspect",
            "case": f"accuracy on {cases} held-out cases",
            **counts,
            "found_pct": round(100 * counts["found"] / max(1, counts["defects"]), 2),
            "false_reject_pct": round(100 * counts["false_rejects"] / max(1, counts["good"]), 2),
        }
    ]


def bench_inspect(stack: Stack, work: Path) -> list[Row]:
    settings = stack.endpoints.nats(NAMESPACE)
    asyncio.run(_prepare_namespace(settings, stack.admin_token))
    work.mkdir(parents=True, exist_ok=True)
    return accuracy_rows() + _size_rows(stack, settings, work)


def main() -> int:
    from bench.__main__ import _settings
    from loupe_shared.kit.logging import configure_logging

    configure_logging("bench", "warning")
    base = Path(tempfile.mkdtemp(prefix="loupe-bench-"))
    stack = Stack(_settings(base / "data"))
    stack.start()
    try:
        rows = bench_inspect(stack, base / "inspect")
    finally:
        stack.stop()
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
