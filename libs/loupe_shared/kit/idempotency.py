"""`Idempotency-Key` on every unsafe API request (draft-ietf-httpapi-idempotency-key-header).

A client that may send a write twice — a retry after a lost answer, an offline queue replayed
— sends a key of its own with it. The first request with a key claims it and runs; its answer
is stored before it is sent, so a request with the same key and the same method, path, query
and body from the same caller gets that answer again (`Idempotent-Replayed: true`) and nothing
runs twice. The same key with another request is a 422; while the first still runs, a 409 with
`Retry-After`. Keys live in a NATS key-value bucket every replica shares, for `KEY_TTL_S`.

Answers that say nothing about the request's own effect are not kept, so sending it again runs
it again: server errors and 503s (nothing was done, or the service cannot tell), 401/403 (the
caller's credentials, not the request), 408, 409, 425 and 429.

The caller is told apart by a hash of its `Authorization` header: two tokens never share a
key. A request runs at most once for its key: the answer is kept after the work committed,
so a process killed between the two leaves a claim with no answer. Its key is answered 409
(still running, then, after `INTERRUPTED_AFTER_S`, interrupted: the outcome is unknown), never
run again.
"""

import base64
import hashlib
import os
import re
import time
import zlib
from typing import Any

import orjson
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loupe_shared.contracts.streams import IDEMPOTENCY_BUCKET, TOKENS_BUCKET
from loupe_shared.kit.logging import get_logger
from loupe_shared.kit.problems import problem_response
from loupe_shared.kit.state import kit_state

_log = get_logger("loupe.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_TTL_S = 24 * 3600.0
# The problem type of the 409 answered while the first request with a key still runs: the one
# 409 a client sends again (after `Retry-After`); every other 409 is a conflict to show.
IN_FLIGHT_TYPE = "urn:loupe:problem:idempotency-key-in-flight"
# A claim still running this long belongs to a request whose process died.
INTERRUPTED_AFTER_S = 300.0
# What the bucket keeps of an answer's body (compressed); a larger answer is not replayed.
MAX_KEPT_BODY = 512 * 1024
VALID_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
_SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_NOT_KEPT = frozenset({401, 403, 408, 409, 425, 429})
_KEPT_HEADERS = (b"content-type", b"location", b"etag", b"content-disposition")


def bucket_for(tokens_bucket: str) -> str:
    """The idempotency bucket in the same namespace as the token bucket `tokens_bucket`."""
    return tokens_bucket.removesuffix(TOKENS_BUCKET) + IDEMPOTENCY_BUCKET


async def open_bucket(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            bucket=bucket,
            history=1,
            ttl=KEY_TTL_S,
            description="Loupe idempotency keys",
            replicas=replicas,
        )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def storable(status: int) -> bool:
    return status < 500 and status not in _NOT_KEPT


class _Fingerprint:
    """SHA-256 of what makes two requests the same: method, path, query and body."""

    def __init__(self, scope: Scope) -> None:
        self._hash = hashlib.sha256()
        self._hash.update(scope["method"].encode() + b" " + scope["raw_path"] + b"?")
        self._hash.update(scope["query_string"] + b"\n")

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, crash_before_keep: bool = False) -> None:
        self.app = app
        self.crash_before_keep = crash_before_keep
        self._kv: KeyValue | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"].encode() in _SAFE_METHODS
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"idempotency-key")
        if raw is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = raw.decode("latin-1")
        if not VALID_KEY.match(key):
            await problem_response(
                request,
                422,
                f"header:{HEADER}: 1 to 255 visible ASCII characters.",
                errors=[{"field": f"header:{HEADER}", "message": "1 to 255 visible ASCII"}],
            )(scope, receive, send)
            return
        try:
            kv = await self._bucket(scope)
        except Exception as exc:
            _log.warning("idempotency.unavailable", error=str(exc) or type(exc).__name__)
            await self._unavailable(request, scope, receive, send)
            return
        caller = hashlib.sha256(_header(scope, b"authorization") or b"").hexdigest()
        name = hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()
        fingerprint = _Fingerprint(scope)
        try:
            claim = await self._claim(kv, name)
        except _Taken as taken:
            state = taken.record.get("state")
            if state in ("running", "interrupted"):
                await problem_response(
                    request,
                    409,
                    f"A request with this {HEADER} is still being answered; try again shortly."
                    if state == "running"
                    else f"The request with this {HEADER} was interrupted and may or may not "
                    "have taken effect; look, then send it with a new key if it did not.",
                    type_=IN_FLIGHT_TYPE if state == "running" else "about:blank",
                    headers={"Retry-After": "1"} if state == "running" else None,
                )(scope, receive, send)
                return
            await self._replay(taken.record, fingerprint, request, scope, receive, send)
            return
        except Exception as exc:
            _log.warning("idempotency.unavailable", error=str(exc) or type(exc).__name__)
            await self._unavailable(request, scope, receive, send)
            return
        await self._run(kv, name, claim, fingerprint, scope, receive, send)

    async def _bucket(self, scope: Scope) -> KeyValue:
        if self._kv is None:
            messaging = kit_state(scope["app"]).connected()
            self._kv = await open_bucket(messaging.js, bucket_for(messaging.tokens.bucket))
        return self._kv

    async def _unavailable(
        self, request: Request, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await problem_response(
            request,
            503,
            f"{HEADER} cannot be checked right now; send the request again shortly.",
            headers={"Retry-After": "2"},
        )(scope, receive, send)

    async def _claim(self, kv: KeyValue, name: str) -> int:
        """Claim the key; its revision. Raises `_Taken` with the record found when a request
        holds it already (running, interrupted, or answered)."""
        running = orjson.dumps({"state": "running", "since": time.time()})
        try:
            return await kv.create(name, running)
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await kv.get(name)
        except KeyNotFoundError:
            return await kv.create(name, running)
        record = _read(entry.value)
        if (
            record.get("state") == "running"
            and time.time() - float(record.get("since", 0)) > INTERRUPTED_AFTER_S
        ):
            record = {"state": "interrupted"}
        raise _Taken(record)

    async def _run(
        self,
        kv: KeyValue,
        name: str,
        claim: int,
        fingerprint: _Fingerprint,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        body_done = False

        async def hashing_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] == "http.request" and not body_done:
                fingerprint.update(message.get("body", b""))
                body_done = not message.get("more_body", False)
            return message

        sent: list[Message] = []

        async def keep(message: Message) -> None:
            sent.append(message)

        try:
            await self.app(scope, hashing_receive, keep)
            # A handler that answered before reading its whole body: the rest still counts.
            while not body_done:
                message = await hashing_receive()
                if message["type"] != "http.request":
                    break
        except BaseException:
            await self._release(kv, name)
            raise
        start = next((m for m in sent if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start is not None else 500
        if start is not None and storable(status):
            body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
            headers = [
                [k.decode("latin-1"), v.decode("latin-1")]
                for k, v in start.get("headers", [])
                if k.lower() in _KEPT_HEADERS
            ]
            if self.crash_before_keep:
                os._exit(70)
            kept = zlib.compress(body)
            record = {
                "state": "answered",
                "fingerprint": fingerprint.hexdigest(),
                "status": status,
                "headers": headers,
                "body": base64.b64encode(kept).decode() if len(kept) <= MAX_KEPT_BODY else None,
            }
            try:
                await kv.update(name, orjson.dumps(record), last=claim)
            except Exception as exc:
                # Not kept: the answer is still sent, and a repeat runs the request again.
                _log.warning("idempotency.not_kept", error=str(exc) or type(exc).__name__)
        else:
            await self._release(kv, name)
        for message in sent:
            await send(message)

    async def _release(self, kv: KeyValue, name: str) -> None:
        try:
            await kv.delete(name)
        except Exception as exc:
            _log.warning("idempotency.release_failed", error=str(exc) or type(exc).__name__)

    async def _replay(
        self,
        record: dict[str, Any],
        fingerprint: _Fingerprint,
        request: Request,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            fingerprint.update(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if fingerprint.hexdigest() != record.get("fingerprint"):
            await problem_response(
                request,
                422,
                f"header:{HEADER}: this key was used for another request; use a new key for a "
                "new request.",
                errors=[{"field": f"header:{HEADER}", "message": "used for another request"}],
            )(scope, receive, send)
            return
        if record.get("body") is None:
            await problem_response(
                request,
                409,
                "This request was answered already; its answer was too large to keep. Read the "
                "result instead.",
            )(scope, receive, send)
            return
        body: bytes = record["body"]
        headers: list[tuple[bytes, bytes]] = [*record["headers"]]
        headers += [
            (REPLAYED_HEADER.lower().encode(), b"true"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": record["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body})


_INTERRUPTED: dict[str, Any] = {"state": "interrupted"}


def _read(value: bytes | None) -> dict[str, Any]:
    """A kept record, with an answer's body and headers decoded. Whatever does not read as
    one — truncated, edited — counts as an interrupted request: never run again, never a 500."""
    try:
        record = orjson.loads(value or b"")
        if not isinstance(record, dict) or record.get("state") not in ("running", "answered"):
            return _INTERRUPTED
        if record["state"] == "running":
            return {"state": "running", "since": float(record.get("since", 0))}
        kept = record["body"]
        return {
            "state": "answered",
            "fingerprint": str(record["fingerprint"]),
            "status": int(record["status"]),
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in record["headers"]],
            "body": None if kept is None else zlib.decompress(base64.b64decode(kept)),
        }
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError, zlib.error):
        return _INTERRUPTED


class _Taken(Exception):
    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__("taken")
        self.record = record
