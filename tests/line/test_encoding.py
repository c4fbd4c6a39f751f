"""What the line client puts on the wire for one result: the model's own JSON, byte for byte
(its serializer called for bytes rather than through `model_dump_json`)."""

from pathlib import Path
from typing import Any

import orjson

from loupe_line import LineClient, LineSettings, new_result_id
from loupe_shared.contracts.results import InspectionResult


class _VendorResult(InspectionResult):
    exposure_us: int = 800


def _client(tmp_path: Path) -> LineClient:
    return LineClient(LineSettings(line_id="L1", spool_path=tmp_path / "spool"))


def _result(**extra: Any) -> dict[str, Any]:
    return {
        "result_id": str(new_result_id()),
        "line_id": "L1",
        "verdict": "fail",
        "defects": [
            {"kind": "scratch", "bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "area": 12.0}
        ],
        "captured_at": "2026-12-05T01:00:00.123456+02:00",
        **extra,
    }


def test_a_result_is_encoded_as_its_model_dump_json(tmp_path: Path) -> None:
    client = _client(tmp_path)
    model = InspectionResult.model_validate(_result(vendor={"lamp": "é\u2028"}))
    assert client._encode_result(model) == model.model_dump_json().encode()
    # A dict is validated into the model first; its unknown fields are kept.
    body = orjson.loads(client._encode_result(_result(vendor={"lamp": 2})))
    assert body["vendor"] == {"lamp": 2}
    assert body["captured_at"] == "2026-12-04T23:00:00.123456Z"  # the contract keeps UTC


def test_a_subclass_keeps_its_own_fields(tmp_path: Path) -> None:
    client = _client(tmp_path)
    model = _VendorResult.model_validate(_result())
    assert orjson.loads(client._encode_result(model))["exposure_us"] == 800
    assert client._encode_result(model) == model.model_dump_json().encode()
