"""ETags and `If-None-Match` on JSON reads.

Every 200 JSON answer to a GET under `/api/` carries an ETag: the route's own when it set one
(a program's revision), otherwise a weak one made from the body. A request whose
`If-None-Match` names it is answered 304 with no body, so a client revalidating its cache
moves a header instead of the document. Streamed answers (event streams, archives) and
answers that are not JSON pass through untouched.
"""

import hashlib

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def weak_etag(body: bytes) -> str:
    return 'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison of `etag` against an If-None-Match list (or `*`)."""
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))


class ETagMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
                break
        start: Message | None = None

        async def tagged(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if message["status"] == 200 and headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    start = message  # held until the body shows whether it is whole
                    return
                await send(message)
                return
            if start is None:
                await send(message)
                return
            held, start = start, None
            headers = MutableHeaders(scope=held)
            if message.get("more_body", False):  # streamed: sent as it comes, untagged
                await send(held)
                await send(message)
                return
            body = message.get("body", b"")
            etag = headers.get("etag") or weak_etag(body)
            headers["ETag"] = etag
            if if_none_match is not None and matches(if_none_match, etag):
                held["status"] = 304
                del headers["content-length"]
                if "content-type" in headers:
                    del headers["content-type"]
                await send(held)
                await send({"type": "http.response.body", "body": b""})
                return
            await send(held)
            await send(message)

        await self.app(scope, receive, tagged)
