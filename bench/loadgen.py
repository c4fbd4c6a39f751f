"""A small closed-loop HTTP/1.1 load generator on raw asyncio streams: cheap enough per
request that on a 2-core machine it measures the server, not the client."""

import asyncio
import statistics
import time
from collections.abc import Callable
from urllib.parse import urlsplit


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value)
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def run(
    path_for: Callable[[], str],
    base_url: str,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration_s: float,
) -> dict[str, float]:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    samples: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                request = f"GET {path_for()} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n"
                started = time.perf_counter()
                writer.write(request.encode())
                status = await _read_response(reader)
                samples.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(samples, n=100)
    return {
        "requests": len(samples),
        "errors": errors,
        "req_per_s": round(len(samples) / elapsed, 1),
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


def measure(
    path_for: Callable[[], str],
    base_url: str,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration_s: float,
    warm_up_s: float = 2.0,
) -> dict[str, float]:
    """`run` after a warm-up of `warm_up_s` whose figures are dropped."""
    for seconds in (warm_up_s, duration_s):
        figures = asyncio.run(
            run(path_for, base_url, headers, concurrency=concurrency, duration_s=seconds)
        )
    return figures
