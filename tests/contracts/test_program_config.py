"""The program config contract: the text the catalog publishes says what the worker does, and
the two sides read the same model, strictly in the catalog and leniently in the worker."""

from typing import Any

import numpy as np
import pytest

from loupe_catalog.programs import config as catalog_config
from loupe_catalog.programs.service import validate_config
from loupe_inspect.pipeline.config import InspectionConfig
from loupe_inspect.pipeline.images import PreparedMaster
from loupe_inspect.pipeline.run import inspect
from loupe_shared.kit.problems import Problem
from tests.inspect import synthetic

ROI = {"x": 150, "y": 150, "width": 120, "height": 120}


def presence(min_defect_area: int, **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 3,
        "tools": [
            {
                "id": "part",
                "type": "presence",
                "roi": ROI,
                "threshold": 30,
                "min_defect_area": min_defect_area,
            }
        ],
        "alignment": {"method": "none"},
        **extra,
    }


def test_published_presence_text_describes_the_area_test() -> None:
    schema = catalog_config.json_schema()["$defs"]["PresenceTool"]
    assert "similarity drops" not in schema["description"]
    assert "changed pixels" in schema["description"]
    assert "`min_defect_area`" in schema["description"]
    assert "never tested" in schema["description"]
    assert "all together" in schema["properties"]["min_defect_area"]["description"]


def test_worker_presence_is_the_area_test_the_schema_describes() -> None:
    part = synthetic.make_case(0, bad=False)
    capture = part.master.copy()
    capture[180:240, 180:240] = int(np.median(part.master))  # 3600 pixels gone

    def outcome(min_defect_area: int) -> tuple[bool, float, float | None]:
        found = inspect(
            PreparedMaster("m", part.master),
            capture,
            InspectionConfig.model_validate(presence(min_defect_area)),
            max_align_pixels=400_000,
        )
        return found.tools[0].passed, found.tools[0].measured, found.similarity

    passed, changed, similarity = outcome(2000)
    assert not passed
    assert changed >= 2000
    # Just above the changed area it passes, at the same similarity: area decides, not it.
    passed, changed_again, similarity_again = outcome(int(changed) + 1)
    assert passed
    assert (changed_again, similarity_again) == (changed, similarity)
    assert not outcome(int(changed))[0]


@pytest.mark.parametrize("where", ["top", "tool", "roi", "alignment"])
def test_unknown_key_is_refused_by_the_catalog_and_read_by_the_worker(where: str) -> None:
    config = presence(10)
    if where == "top":
        config["added_later"] = 1
    elif where == "tool":
        config["tools"][0]["added_later"] = 1
    elif where == "roi":
        config["tools"][0]["roi"]["added_later"] = 1
    else:
        config["alignment"]["added_later"] = 1

    with pytest.raises(Problem) as refused:
        validate_config(config)
    assert refused.value.status == 422
    assert "added_later" in str(refused.value.extra)

    read = InspectionConfig.model_validate(config)
    assert read.enabled_tools[0].min_defect_area == 10
    assert read.alignment.method == "none"
