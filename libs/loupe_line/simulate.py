"""Simulated inspection results, shaped like a real line's: most parts pass, failing parts
carry a few defects, some inspections end in an error."""

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from loupe_shared.contracts.results import BoundingBox, Defect, InspectionResult, new_result_id

# The camera's frame, in pixels.
FRAME_WIDTH = 2448
FRAME_HEIGHT = 2048
DEFECT_KINDS = ("scratch", "dent", "stain", "crack", "missing-component", "burr")
ERROR_REASONS = (
    "capture could not be decoded",
    "part not found in the field of view",
    "program revision not loaded",
)


@dataclass(frozen=True)
class SimulationPlan:
    line_id: str
    station: str = "S1"
    fail_rate: float = 0.05
    error_rate: float = 0.0
    program_id: uuid.UUID | None = None
    program_revision: int | None = None
    seed: int | None = None


class ResultSimulator:
    def __init__(self, plan: SimulationPlan) -> None:
        self.plan = plan
        self._random = random.Random(plan.seed)
        self._serial = 0
        self._prefix = datetime.now(UTC).strftime("%Y%m%d")

    def next(self) -> InspectionResult:
        self._serial += 1
        plan, rnd = self.plan, self._random
        roll = rnd.random()
        if roll < plan.error_rate:
            verdict = "error"
        elif roll < plan.error_rate + plan.fail_rate:
            verdict = "fail"
        else:
            verdict = "pass"
        defects = [self._defect() for _ in range(rnd.randint(1, 4))] if verdict == "fail" else []
        if verdict == "fail":
            score: float | None = round(min(d.score or 0.0 for d in defects), 3)
        elif verdict == "pass":
            score = round(rnd.uniform(0.9, 1.0), 3)
        else:
            score = None
        return InspectionResult(
            # Unique even across runs with the same seed: a result id is never reused; time-
            # ordered, as the line client recommends.
            result_id=new_result_id(),
            line_id=plan.line_id,
            station=plan.station,
            program_id=plan.program_id,
            program_revision=plan.program_revision,
            part_id=f"{plan.line_id}-{self._prefix}-{self._serial:07d}",
            verdict=verdict,
            score=score,
            defects=defects,
            processing_ms=round(max(1.0, rnd.gauss(38.0, 9.0)), 2),
            captured_at=datetime.now(UTC),
            is_simulated=True,
            reason=rnd.choice(ERROR_REASONS) if verdict == "error" else None,
        )

    def _defect(self) -> Defect:
        rnd = self._random
        width, height = rnd.randint(4, 240), rnd.randint(4, 240)
        x, y = rnd.randint(0, FRAME_WIDTH - width), rnd.randint(0, FRAME_HEIGHT - height)
        return Defect(
            kind=rnd.choice(DEFECT_KINDS),
            bbox=BoundingBox(x=x, y=y, width=width, height=height),
            # The defect covers part of its box.
            area=round(width * height * rnd.uniform(0.2, 0.9), 1),
            score=round(rnd.uniform(0.35, 0.99), 3),
            tool_id=f"tool-{rnd.randint(1, 6)}",
        )
