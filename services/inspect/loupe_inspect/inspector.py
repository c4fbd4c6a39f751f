"""One inspection from request to result: load the revision, the master and the capture,
run the pipeline in the executor within the time limit, and shape the result.

A request that can never succeed (an undecodable capture, a missing master, program or
revision, an ROI outside the image, the time limit) answers a result with verdict `error` and
the reason. A passing failure (catalog or object store unreachable) raises `Unavailable`."""

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from loupe_inspect.caches import MasterCache, RevisionCache
from loupe_inspect.pipeline.align import AlignmentFailed
from loupe_inspect.pipeline.images import PreparedMaster, UndecodableImage, decode_gray
from loupe_inspect.pipeline.overlay import render
from loupe_inspect.pipeline.run import Outcome, RoiOutside, inspect
from loupe_inspect.sources import Blobs, Catalog, Images, ProgramRevision, Rejected
from loupe_shared.contracts.inspect import AlignmentSummary, InspectedResult, ToolSummary
from loupe_shared.contracts.results import MAX_DEFECTS, BoundingBox, Defect, InspectionRequest
from loupe_shared.kit.logging import get_logger

_log = get_logger("inspect.inspector")
# Results of one request always carry the same id, so a redelivered request that is
# inspected twice is stored once.
_RESULT_IDS = uuid.UUID("6f1d3a52-8c0e-4d4b-9a57-6b8f3f0c2e11")
T = TypeVar("T")


def result_id(request_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_RESULT_IDS, str(request_id))


class Inspector:
    def __init__(
        self,
        catalog: Catalog,
        blobs: Blobs,
        *,
        executor: ThreadPoolExecutor,
        masters: MasterCache,
        revisions: RevisionCache,
        time_limit_s: float,
        max_align_pixels: int,
        worker_id: str,
        images: Images | None = None,
    ) -> None:
        self.images = images
        self.catalog = catalog
        self.blobs = blobs
        self.executor = executor
        self.masters = masters
        self.revisions = revisions
        self.time_limit_s = time_limit_s
        self.max_align_pixels = max_align_pixels
        self.worker_id = worker_id

    async def revision(self, program_id: uuid.UUID, number: int | None) -> ProgramRevision:
        return await self.revisions.get(
            program_id, number, by_number=self.catalog.revision, current=self.catalog.current
        )

    async def master(self, sha256: str) -> PreparedMaster:
        async def load(key: str) -> PreparedMaster:
            data = await self.blobs.read(key)
            if data is None:
                raise Rejected(f"the master image {key} is not stored")
            try:
                gray = await self._off_loop(decode_gray, data)
            except UndecodableImage as exc:
                raise Rejected(f"the master image {key} cannot be decoded: {exc}") from None
            return PreparedMaster(key, gray)

        return await self.masters.get(sha256, load)

    async def _off_loop(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def outcome(
        self,
        program_id: uuid.UUID,
        number: int | None,
        capture_sha256: str,
        *,
        overlay: bool = False,
    ) -> tuple[ProgramRevision, Outcome, bytes | None]:
        """Inspect a stored capture; raises `Rejected` or `Unavailable`."""
        revision = await self.revision(program_id, number)
        if not revision.master_image_sha256:
            raise Rejected(
                f"revision {revision.revision} of program {program_id} has no master image"
            )
        master, data = await asyncio.gather(
            self.master(revision.master_image_sha256), self.blobs.read(capture_sha256)
        )
        if data is None:
            raise Rejected(f"the capture {capture_sha256} is not stored")
        try:
            found, drawn = await self._off_loop(self._run, master, data, revision, overlay)
        except UndecodableImage as exc:
            raise Rejected(f"the capture cannot be decoded: {exc}") from None
        except (RoiOutside, AlignmentFailed) as exc:
            raise Rejected(str(exc)) from None
        return revision, found, drawn

    def _run(
        self, master: PreparedMaster, data: bytes, revision: ProgramRevision, overlay: bool
    ) -> tuple[Outcome, bytes | None]:
        capture = decode_gray(data)
        found = inspect(master, capture, revision.config, max_align_pixels=self.max_align_pixels)
        return found, render(capture, found) if overlay else None

    async def handle(self, request: InspectionRequest) -> InspectedResult:
        """The result of a request (verdict `error` when it can never be inspected)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.time_limit_s):
                revision, found, drawn = await self.outcome(
                    request.program_id,
                    request.program_revision,
                    request.capture_sha256,
                    overlay=request.overlay and self.images is not None,
                )
                overlay_sha = await self._store_overlay(request, drawn)
        except Rejected as exc:
            return self.error(request, str(exc), started)
        except TimeoutError:
            return self.error(
                request, f"the inspection took longer than {self.time_limit_s:g} s", started
            )
        result = self.result(request, revision, found, started)
        result.overlay_sha256 = overlay_sha
        return result

    async def _store_overlay(self, request: InspectionRequest, drawn: bytes | None) -> str | None:
        """The overlay is an extra: when it cannot be stored the result goes without it."""
        if drawn is None or self.images is None:
            return None
        try:
            return await self.images.store_overlay(
                drawn, line_id=request.line_id, request_id=request.request_id
            )
        except Exception as exc:
            _log.warning(
                "inspect.overlay_not_stored", request_id=str(request.request_id), error=str(exc)
            )
            return None

    def _base(self, request: InspectionRequest, started: float | None) -> dict[str, object]:
        elapsed = None if started is None else (time.perf_counter() - started) * 1000
        return {
            "result_id": result_id(request.request_id),
            "request_id": request.request_id,
            "line_id": request.line_id,
            "station": request.station,
            "program_id": request.program_id,
            "part_id": request.part_id,
            "captured_at": request.captured_at,
            "capture_sha256": request.capture_sha256,
            "is_simulated": request.is_simulated,
            "inspected_by": self.worker_id,
            "processing_ms": None if elapsed is None else round(elapsed, 3),
        }

    def error(
        self, request: InspectionRequest, reason: str, started: float | None = None
    ) -> InspectedResult:
        _log.info("inspect.rejected", request_id=str(request.request_id), reason=reason)
        return InspectedResult.model_validate(
            {
                **self._base(request, started),
                "program_revision": request.program_revision,
                "verdict": "error",
                "reason": reason[:2000],
            }
        )

    def result(
        self,
        request: InspectionRequest,
        revision: ProgramRevision,
        found: Outcome,
        started: float,
    ) -> InspectedResult:
        defects = [
            Defect(
                kind=d.kind,
                bbox=BoundingBox(x=d.x, y=d.y, width=d.width, height=d.height),
                area=d.area,
                score=round(d.score, 3),
                tool_id=d.tool_id,
            )
            for d in found.defects[:MAX_DEFECTS]
        ]
        return InspectedResult.model_validate(
            {
                **self._base(request, started),
                "program_revision": revision.revision,
                "verdict": found.verdict,
                "score": None if found.similarity is None else round(found.similarity, 4),
                "defects": defects,
                "tools": [
                    ToolSummary(
                        tool_id=t.tool_id,
                        type=t.type,
                        passed=t.passed,
                        measured=round(t.measured, 3),
                        limit=t.limit,
                    )
                    for t in found.tools
                ],
                "alignment": AlignmentSummary(
                    method=found.pose.method,
                    shift_px=round(found.pose.shift_px, 2),
                    rotation_deg=round(found.pose.rotation_deg, 3),
                ),
            }
        )
