"""The issue's accuracy targets on the scikit-image suite (test seeds only; the benchmark
measures the held-out seeds): at least 99 % of defects covering 0.1 % of the ROI or more are
found, and at most 1 % of good parts are rejected."""

from loupe_inspect.pipeline.config import InspectionConfig
from loupe_inspect.pipeline.images import PreparedMaster
from loupe_inspect.pipeline.run import inspect
from tests.inspect import synthetic

CASES = 400


def measure(seeds: range) -> dict[str, int]:
    counts = {"good": 0, "false_rejects": 0, "defects": 0, "found": 0, "bad": 0, "bad_failed": 0}
    for seed in seeds:
        case = synthetic.make_case(seed)
        config = InspectionConfig.model_validate(synthetic.program_config(case.roi))
        outcome = inspect(
            PreparedMaster(str(seed), case.master), case.capture, config, max_align_pixels=400_000
        )
        boxes = [(d.x, d.y, d.width, d.height) for d in outcome.defects if d.kind == "difference"]
        if case.good:
            counts["good"] += 1
            counts["false_rejects"] += outcome.verdict == "fail"
        else:
            counts["bad"] += 1
            counts["bad_failed"] += outcome.verdict == "fail"
            counts["defects"] += len(case.defects)
            counts["found"] += sum(synthetic.found(d, boxes) for d in case.defects)
    return counts


def test_defects_found_and_false_rejects_meet_the_targets() -> None:
    counts = measure(synthetic.TEST_SEEDS[:CASES])
    assert counts["good"] >= CASES // 2 - 1
    assert counts["defects"] >= CASES // 2
    assert counts["found"] >= 0.99 * counts["defects"], counts
    assert counts["false_rejects"] <= 0.01 * counts["good"], counts
    assert counts["bad_failed"] >= 0.99 * counts["bad"], counts
