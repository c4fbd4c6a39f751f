"""The line client against the platform's NATS: batching, order, ids, extra fields, refusal
of invalid results, inspection requests."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from loupe_line import LineClient
from loupe_shared.contracts.results import InspectionRequest
from loupe_shared.contracts.subjects import INSPECTION_REQUESTED
from loupe_shared.kit.settings import NatsSettings
from tests.line.conftest import SettingsFactory
from tests.line.helpers import new_result, read_batches, read_stream, result_ids


async def test_results_arrive_once_in_order_and_in_batches(
    line_settings: SettingsFactory, nats_settings: NatsSettings, namespace: str
) -> None:
    vendor = {"camera": {"serial": "CAM-7", "exposure_us": 800}, "lot": "A-17"}
    results = [new_result(vendor=vendor, part_id=f"P{i}") for i in range(5000)]
    results[0]["defects"] = [
        {"bbox": {"x": 1, "y": 2, "width": 3, "height": 4}, "area": 5.0, "heat": [0.1, 0.2]}
    ]
    async with LineClient(line_settings()) as client:
        # The first few one at a time, the rest pipelined as a busy line would.
        for result in results[:20]:
            await client.publish(result)
        receipts = [await client.submit(result) for result in results[20:]]
        await asyncio.gather(*receipts)
        stats = client.stats()
    assert (stats.published, stats.spooled, stats.failures) == (5000, 0, 0)

    batches = await read_batches(nats_settings, namespace)
    assert result_ids(batches) == [r["result_id"] for r in results]
    sizes = [len(batch.results) for _, batch in batches]
    assert max(sizes) > 1
    assert len(batches) <= 5000 // 250 + 40
    msg_ids = [headers["Nats-Msg-Id"] for headers, _ in batches]
    assert len(set(msg_ids)) == len(batches)
    assert all(len(m) == 32 and int(m, 16) >= 0 for m in msg_ids)
    first = batches[0][1].results[0]
    assert first.model_extra == {"vendor": vendor}
    assert first.defects[0].model_extra == {"heat": [0.1, 0.2]}


async def test_invalid_results_are_refused_before_anything_is_sent(
    line_settings: SettingsFactory, nats_settings: NatsSettings, namespace: str
) -> None:
    async with LineClient(line_settings()) as client:
        with pytest.raises(ValidationError, match="line_id"):
            await client.publish(new_result(line_id="no spaces allowed"))
        with pytest.raises(ValidationError, match="time zone"):
            await client.publish(new_result(captured_at="2026-01-31T12:00:00"))
        with pytest.raises(ValidationError, match="verdict"):
            await client.publish(new_result(verdict="maybe"))
        with pytest.raises(ValidationError, match="result_id"):
            await client.publish({"line_id": "L1", "verdict": "pass"})
        # Every part within its bounds (a defect's unknown fields up to 256 KiB), the result
        # beyond the batch's.
        box = {"x": 0, "y": 0, "width": 1, "height": 1}
        defects = [{"bbox": box, "area": 1, "note": "x" * 200_000} for _ in range(10)]
        with pytest.raises(ValueError, match="batch_max_bytes"):
            await client.publish(new_result(verdict="fail", defects=defects))
        with pytest.raises(TypeError):
            await client.publish(["not", "a", "result"])  # type: ignore[arg-type]
        await client.flush()
        stats = client.stats()
    assert (stats.published, stats.spooled, stats.in_flight) == (0, 0, 0)
    assert await read_batches(nats_settings, namespace) == []


async def test_an_inspection_request_carries_its_id_and_follows_earlier_results(
    line_settings: SettingsFactory, nats_settings: NatsSettings, namespace: str
) -> None:
    request = InspectionRequest(
        request_id=uuid.uuid4(),
        line_id="L1",
        program_id=uuid.uuid4(),
        capture_sha256="ab" * 32,
        captured_at=datetime.now(UTC),
        is_simulated=True,
    )
    async with LineClient(line_settings()) as client:
        before = await client.submit(new_result())
        await client.request_inspection(request)
        assert before.done()  # the result accepted first was durable first
        with pytest.raises(ValidationError):
            await client.request_inspection({"request_id": "nope"})
    (stored,) = await read_stream(nats_settings, namespace, "INSPECTION", INSPECTION_REQUESTED)
    assert stored.headers["Nats-Msg-Id"] == str(request.request_id)
    assert InspectionRequest.model_validate_json(stored.data) == request
    assert len(result_ids(await read_batches(nats_settings, namespace))) == 1


async def test_a_spool_has_one_owner(line_settings: SettingsFactory) -> None:
    settings = line_settings()
    async with LineClient(settings):
        with pytest.raises(RuntimeError, match="another line client"):
            await LineClient(settings).start()
