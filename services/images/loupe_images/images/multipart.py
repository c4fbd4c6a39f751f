"""Multipart uploads, parsed as they stream: the file part goes through the same bounded,
hashing spool as a raw body; the small form fields (`kind`, `line_id`, `tags`, `filename`) are
collected beside it."""

import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from python_multipart.multipart import MultipartParser, parse_options_header

from loupe_images.settings import ImagesSettings
from loupe_shared.kit.problems import Problem

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 1024
MAX_FIELDS = 40


@dataclass
class Upload:
    spool: IO[bytes]
    sha256: str = ""
    size: int = 0
    content_type: str | None = None
    filename: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytes = b""
    header_value: bytes = b""
    name: str = ""
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


def boundary_of(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Problem(
            400, "A multipart upload needs Content-Type multipart/form-data with a boundary."
        )
    return boundary


async def receive(
    chunks: AsyncIterator[bytes], content_type: str, settings: ImagesSettings
) -> Upload:
    upload = Upload(spool=tempfile.SpooledTemporaryFile(max_size=settings.spool_bytes))  # noqa: SIM115
    digest = hashlib.sha256()
    files = 0
    ended = False
    part = _Part()

    def on_part_begin() -> None:
        nonlocal part
        part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.header_value += data[start:end]

    def on_header_end() -> None:
        part.headers[part.header_field.lower()] = part.header_value
        part.header_field, part.header_value = b"", b""

    def on_headers_finished() -> None:
        nonlocal files
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options or part.name == "file":
            part.is_file = True
            files += 1
            if files > 1:
                raise Problem(400, "Send one image per upload.")
            upload.filename = options.get(b"filename", b"").decode("utf-8", "replace")
            declared = part.headers.get(b"content-type", b"").decode("latin-1").strip().lower()
            upload.content_type = declared or None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if not part.is_file:
            part.value += chunk
            if len(part.value) > MAX_FIELD_BYTES:
                raise Problem(
                    413, f"Form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes."
                )
            return
        upload.size += len(chunk)
        if upload.size > settings.max_upload_bytes:
            raise Problem(413, f"The image is larger than {settings.max_upload_bytes} bytes.")
        digest.update(chunk)
        upload.spool.write(chunk)

    def on_end() -> None:
        nonlocal ended
        ended = True

    def on_part_end() -> None:
        if part.is_file:
            return
        values = upload.fields.setdefault(part.name, [])
        values.append(part.value.decode("utf-8", "replace"))
        if sum(len(v) for v in upload.fields.values()) > MAX_FIELDS:
            raise Problem(413, "Too many form fields.")

    callbacks: MultipartCallbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
    try:
        parser = MultipartParser(boundary_of(content_type), callbacks)
        async for chunk in chunks:
            parser.write(chunk)
        # The parser itself takes a body without its closing boundary (a cut-off upload).
        if not ended:
            raise Problem(400, "The multipart body ends before its closing boundary.")
        parser.finalize()
    except Problem:
        upload.spool.close()
        raise
    except Exception as exc:
        upload.spool.close()
        raise Problem(400, f"The multipart body cannot be read: {exc}") from None
    if files == 0:
        upload.spool.close()
        raise Problem(422, "The multipart body has no file part (name it 'file').")
    upload.sha256 = digest.hexdigest()
    return upload
