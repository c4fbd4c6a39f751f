"""The images service layer: upload (stream, bound, hash, sniff, check, store by hash, then
announce), lookups, deletion and garbage collection, each audited here."""

import asyncio
import hashlib
import re
import tempfile
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import IO, Any, cast

import cv2
import numpy as np
from minio import Minio
from nats.js.client import JetStreamContext

from loupe_images.images import multipart, sniff, storage, thumbnails
from loupe_images.images.schemas import UploadOptions
from loupe_images.images.thumbnailer import Thumbnailer
from loupe_images.settings import ImagesSettings
from loupe_images.state import ImagesState
from loupe_shared.contracts import subjects
from loupe_shared.contracts.events import ImageStored, Thumbnail
from loupe_shared.kit.audit import Actor, audit_actor
from loupe_shared.kit.auth import Permission
from loupe_shared.kit.problems import Problem

# How many object-store lookups one existence check runs at a time.
EXISTS_CONCURRENCY = 16

# A bad image is answered as a problem document; OpenCV's own messages would only break the
# JSON log stream.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def sanitize_filename(name: str) -> str:
    """The client's file name, kept only as harmless metadata."""
    name = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._ -]", "_", name).strip(" .")
    return name[:200]


def _decode_check(path_or_bytes: bytes) -> bool:
    array = np.frombuffer(path_or_bytes, dtype=np.uint8)
    # A reduced decode still walks the whole compressed stream: truncation and corruption
    # show, at an eighth of the memory.
    return cv2.imdecode(array, cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None


async def receive(
    chunks: AsyncIterator[bytes], settings: ImagesSettings
) -> tuple[IO[bytes], str, int]:
    """Spool the body (memory up to a bound, disk beyond), hashing as it arrives; stop at the
    size limit. Answers the spool, the SHA-256 and the size."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=settings.spool_bytes)  # noqa: SIM115
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > settings.max_upload_bytes:
                raise Problem(413, f"The image is larger than {settings.max_upload_bytes} bytes.")
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    return spool, digest.hexdigest(), size


async def store(
    *,
    spool: IO[bytes],
    sha256: str,
    size: int,
    declared_type: str | None,
    declared_sha256: str | None,
    kind: str,
    filename: str,
    line_id: str,
    tags: list[str],
    settings: ImagesSettings,
    s3: Minio,
    js: JetStreamContext,
    thumbnailer: Thumbnailer,
    request_id: str | None,
) -> tuple[storage.StoredImage, list[dict[str, Any]], list[int], bool]:
    """Store the upload; answers the image, its thumbnails, the sizes of those that follow
    (made after the answer) and whether it was there already."""
    if declared_sha256 is not None and declared_sha256.lower() != sha256:
        raise Problem(
            400,
            "The body's SHA-256 differs from X-Content-SHA256; nothing was stored.",
            sha256=sha256,
        )
    if size == 0:
        raise Problem(422, "The body is empty.")
    try:
        header = await asyncio.to_thread(sniff.read_header, spool)
    except sniff.NotAnImage as exc:
        raise Problem(415, f"Not an accepted image: {exc}.") from None
    if (
        declared_type
        and declared_type.startswith("image/")
        and declared_type != header.content_type
    ):
        raise Problem(
            422,
            f"Declared {declared_type}, but the bytes are {header.content_type}; "
            "nothing was stored.",
        )
    if header.width * header.height > settings.max_pixels:
        raise Problem(
            413,
            f"{header.width} x {header.height} pixels is more than the "
            f"{settings.max_pixels} allowed.",
        )
    existing = await asyncio.to_thread(storage.stat, s3, settings.images_bucket, sha256)
    if existing is not None:
        await thumbnailer.settled(sha256)
        known = await thumbnailer.status(sha256)
        followed = known is not None and known["state"] == "pending"
        if known is None or followed:
            # An earlier upload stopped between the blob and its thumbnails: finish it.
            spool.seek(0)
            known = await thumbnailer.generate(
                sha256, spool.read(), existing.width, existing.height
            )
        # Announced again (the same event id, so a no-op if it went out before), in case the
        # earlier upload stopped before announcing.
        await announce(js, existing, known["thumbnails"], settings.namespace, request_id)
        if followed:  # and those that were to follow its answer
            await announce(
                js, existing, known["thumbnails"], settings.namespace, request_id, following=True
            )
        return existing, known["thumbnails"], [], True
    spool.seek(0)
    data = spool.read()
    # The thumbnails' decode walks the whole compressed stream: it is also the check that
    # the image is not truncated or corrupt. Only when it fails (or takes too long) is the
    # image decoded once more the way the check always did, so what is refused is unchanged.
    scaled: dict[int, Any] = {}
    failure: str | None = None
    try:
        scaled = await thumbnailer.scale(data, header.width, header.height)
    except thumbnails.ThumbnailError as exc:
        failure = str(exc)
    except TimeoutError:
        failure = f"gave up after {thumbnailer.timeout_s:g} s"
    if not scaled and not await asyncio.get_running_loop().run_in_executor(
        None, _decode_check, data
    ):
        raise Problem(
            422, f"The {header.content_type} image cannot be decoded (truncated or corrupt)."
        )
    image = storage.StoredImage(
        sha256=sha256,
        size=size,
        width=header.width,
        height=header.height,
        content_type=header.content_type,
        kind=kind,
        filename=sanitize_filename(filename),
        line_id=line_id,
        tags=tags,
        upload_id=uuid.uuid4().hex,
    )
    await asyncio.to_thread(storage.put, s3, settings.images_bucket, image, spool)
    later: set[int] = set()
    if failure is not None:
        status = await thumbnailer.record_failure(sha256, failure)
    else:
        if header.width * header.height > settings.large_thumbnail_later_pixels:
            later = {max(thumbnails.SIZES)}
        status = await thumbnailer.store(sha256, scaled, later=later)
    await announce(js, image, status["thumbnails"], settings.namespace, request_id)
    if status["state"] != "pending":
        return image, status["thumbnails"], [], False

    async def announce_all(thumbs: list[dict[str, Any]]) -> None:
        await announce(js, image, thumbs, settings.namespace, request_id, following=True)

    # Only once the first announcement is out, so the complete one comes after it.
    thumbnailer.follow(
        sha256, {size: scaled[size] for size in later}, status["thumbnails"], announce_all
    )
    return image, status["thumbnails"], sorted(later), False


async def announce(
    js: JetStreamContext,
    image: storage.StoredImage,
    thumbs: list[dict[str, Any]],
    namespace: str,
    request_id: str | None,
    *,
    following: bool = False,
) -> None:
    """`images.stored`, only ever after the object is stored. The id names this storing of
    the bytes, so a repeat announcement is a no-op; thumbnails that followed the upload's
    answer are announced once more (`following`), with every thumbnail."""
    event = ImageStored(
        event_id=f"images.stored.{image.sha256}.{image.upload_id}"
        + (".thumbnails" if following else ""),
        sha256=image.sha256,
        size=image.size,
        width=image.width,
        height=image.height,
        content_type=image.content_type,
        kind=cast(Any, image.kind),
        line_id=image.line_id,
        thumbnails=[Thumbnail(**entry) for entry in thumbs],
        request_id=request_id,
    )
    await js.publish(
        subjects.subject(subjects.IMAGES_STORED, namespace),
        event.model_dump_json().encode(),
        headers={"Nats-Msg-Id": event.event_id},
    )


# --- what the API does ---------------------------------------------------------------------


async def upload(
    state: ImagesState,
    actor: Actor,
    chunks: AsyncIterator[bytes],
    *,
    content_type: str | None,
    options: UploadOptions,
    declared_sha256: str | None,
) -> tuple[storage.StoredImage, list[dict[str, Any]], list[int], bool]:
    """Receive a raw or multipart (`file`) body and store it; a new image is audited.
    Answers the image, its thumbnails, the sizes of those that follow and whether it was
    stored already."""
    settings = state.settings
    declared = (content_type or "").split(";")[0].strip().lower() or None
    if declared == "multipart/form-data":
        form = await multipart.receive(chunks, content_type or "", settings)
        spool, sha256, size = form.spool, form.sha256, form.size
        declared = form.content_type
        fields = {"filename": [form.filename], **form.fields} if form.filename else form.fields
        try:
            options = options.with_form(fields)
        except Problem:
            spool.close()
            raise
    else:
        spool, sha256, size = await receive(chunks, settings)
    try:
        image, thumbs, pending, duplicate = await store(
            spool=spool,
            sha256=sha256,
            size=size,
            declared_type=declared,
            declared_sha256=declared_sha256,
            kind=options.kind,
            filename=options.filename,
            line_id=options.line_id,
            tags=options.tags,
            settings=settings,
            s3=state.s3,
            js=state.js,
            thumbnailer=state.thumbnailer,
            request_id=actor.request_id,
        )
    finally:
        spool.close()
    if not duplicate:
        await audit_actor(
            state.js,
            actor,
            action="images.upload",
            target=f"image:{sha256}",
            namespace=settings.namespace,
            details={"size": size, "kind": options.kind},
        )
    return image, thumbs, pending, duplicate


async def stored(state: ImagesState, sha256: str) -> storage.StoredImage:
    """What is stored for an image; a 404 problem when it is not."""
    found = await asyncio.to_thread(storage.stat, state.s3, state.settings.images_bucket, sha256)
    if found is None:
        raise Problem(404, f"No image {sha256}.")
    return found


async def which_exist(state: ImagesState, hashes: list[str]) -> tuple[list[str], list[str]]:
    """The hashes (without repeats, in the order given) stored and missing."""
    gate = asyncio.Semaphore(EXISTS_CONCURRENCY)
    bucket = state.settings.images_bucket

    async def present(sha256: str) -> bool:
        async with gate:
            return await asyncio.to_thread(storage.stat, state.s3, bucket, sha256) is not None

    wanted = list(dict.fromkeys(hashes))
    found = await asyncio.gather(*(present(sha) for sha in wanted))
    return (
        [sha for sha, hit in zip(wanted, found, strict=True) if hit],
        [sha for sha, hit in zip(wanted, found, strict=True) if not hit],
    )


async def thumbnail_status(state: ImagesState, sha256: str) -> dict[str, Any]:
    """A stored image's thumbnail status (pending until one is recorded)."""
    await stored(state, sha256)
    status = await state.thumbnailer.status(sha256)
    return {"sha256": sha256, **(status or {"state": "pending", "error": None, "thumbnails": []})}


async def delete(state: ImagesState, actor: Actor, sha256: str, *, force: bool) -> None:
    """Delete an image the catalog lets go (or any, forced by an admin), audited; a 409
    problem lists the program revisions that use it."""
    if force and Permission.IMAGES_FORCE_DELETE not in actor.principal.permissions:
        raise Problem(403, "Only an admin may force the deletion of a referenced image.")
    await stored(state, sha256)
    # Thumbnails still following the image's upload are stored before it goes, not after.
    await state.thumbnailer.settled(sha256)
    reply = await state.deleter.delete(sha256, force=force, request_id=actor.request_id)
    if sha256 not in reply.granted:
        uses = reply.referenced.get(sha256, [])
        raise Problem(
            409,
            f"{len(uses)} program revision(s) use this image; archive or change them first"
            " (an admin may force the deletion).",
            title="Image in use",
            references=uses,
        )
    await audit_actor(
        state.js,
        actor,
        action="images.force_delete" if force else "images.delete",
        target=f"image:{sha256}",
        namespace=state.settings.namespace,
        details={"forced": force, "references": reply.referenced.get(sha256, [])},
    )


async def collect_garbage(
    state: ImagesState, actor: Actor, *, grace_s: float | None, dry_run: bool
) -> dict[str, Any]:
    """One garbage collection now (audited unless a dry run); answers its summary."""
    settings = state.settings
    summary = await state.deleter.collect(
        grace_s=settings.gc_grace_s if grace_s is None else grace_s, dry_run=dry_run
    )
    if not dry_run:
        await audit_actor(
            state.js,
            actor,
            action="images.gc",
            target="images",
            namespace=settings.namespace,
            details={k: summary[k] for k in ("grace_s", "collected", "collected_bytes")},
        )
    return summary
