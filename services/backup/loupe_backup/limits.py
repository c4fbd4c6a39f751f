"""A small body limit on the backup service's JSON routes: their bodies are a few hundred
bytes, so anything large is refused with 413 before it is parsed. The archive import is the
one route that takes a large body (a tar stream, spooled to disk)."""

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loupe_shared.kit.problems import problem_response

_UNLIMITED = frozenset({"/api/backups/import"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class JsonBodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or scope["path"] in _UNLIMITED
        ):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        # Read (at most the limit) before the route does, then hand the body on.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            Request(scope),
            413,
            f"The body is larger than {self.max_bytes} bytes, the limit of this route.",
            max_bytes=self.max_bytes,
        )
        await response(scope, receive, send)
