"""uvicorn's httptools protocol with each response's head and body sent in one write.

uvicorn writes the head of a response as soon as the app starts it and the body with the
next message: two `send` system calls, and two segments for the gateway to read, for every
small JSON answer. Here a small write is held until the next one joins it (one `writev`) or,
at the latest, until the event loop's current turn ends; nothing is reordered and no write is
held past that turn, so a streamed answer's head still leaves before its first chunk waits.
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A response head is far smaller; larger writes (bodies) go out at once, joined with what
# is held, so the transport's own flow control sees every byte as before.
_HOLD_MAX = 16 * 1024


class _CoalescingTransport:
    """Holds at most one small write until the next write or the end of the loop's turn."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif len(data) <= _HOLD_MAX and not self._transport.is_closing():
            self._held = bytes(data)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._scheduled_flush)
        else:
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        self.flush()
        self._transport.writelines(chunks)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if not self._transport.is_closing():
            self.flush()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = _CoalescingTransport(transport, self.loop)
        super().connection_made(wrapped)
