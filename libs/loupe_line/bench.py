"""Publish rate of one line process, acknowledged by JetStream, for the benchmark harness."""

import time
from typing import Any

from loupe_line.client import LineClient
from loupe_line.settings import LineSettings
from loupe_line.simulate import ResultSimulator, SimulationPlan


async def measure_publish_rate(
    settings: LineSettings, count: int, *, from_dicts: bool = False
) -> float:
    """Results per second from the first submit to the last ack, `count` simulated results
    (5 % failing, with defects) built beforehand. With `from_dicts`, each result is handed
    over as a dict, so its validation is timed too. Raises if anything was spooled: the
    figure is for acknowledged publishes. Use a scratch spool and namespace."""
    simulator = ResultSimulator(SimulationPlan(line_id=settings.line_id, seed=1))
    models = [simulator.next() for _ in range(count)]
    results: list[Any] = [m.model_dump(mode="json") for m in models] if from_dicts else models
    async with LineClient(settings) as client:
        if not client.stats().connected:
            raise RuntimeError(f"NATS at {settings.nats_url} is not reachable")
        started = time.perf_counter()
        for result in results:
            await client.submit(result)
        await client.flush()
        elapsed = time.perf_counter() - started
        stats = client.stats()
    if stats.spooled or stats.published != count:
        raise RuntimeError(f"not every result was acknowledged directly: {stats}")
    return count / elapsed
