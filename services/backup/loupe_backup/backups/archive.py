"""One backup set as one tar stream (`loupe-backup/manifest.json` first, then the data files,
then every blob once, named by its hash), and the import of such a stream.

An archive is outside input. An import is checked completely before anything is written to
the backup bucket: the manifest's size is capped before it is read, and it must pass the
strict schema (names the code would have written, partition bounds it can render, only the
live schema's tables); every other member must be a regular file, under its cap, named as
the manifest's data files and blobs are derived, and hash as the manifest says; nothing may
be missing. A refused archive leaves no trace.
"""

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from minio import Minio

from loupe_backup.backups import layout, objects
from loupe_backup.backups.manifest import (
    InvalidManifest,
    Manifest,
    UnsupportedFormat,
    data_file,
    parse,
)

ROOT = "loupe-backup/"
MANIFEST = f"{ROOT}manifest.json"
_BLOCK = 512


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    bucket_key: str | None  # None: the manifest, sent from memory


def members(manifest: Manifest) -> list[Member]:
    found = [
        Member(
            f"{ROOT}{data_file(t.table)}",
            t.size,
            layout.data_key(manifest.backup_id, data_file(t.table)),
        )
        for t in manifest.tables
    ]
    seen: set[str] = set()
    for entry in manifest.objects:
        if entry.sha256 not in seen:
            seen.add(entry.sha256)
            key = layout.blob_key(entry.sha256)
            found.append(Member(f"{ROOT}{key}", entry.size, key))
    return found


def archive_size(manifest_bytes: bytes, parts: list[Member]) -> int:
    size = len(_header(MANIFEST, len(manifest_bytes))) + len(manifest_bytes)
    size += len(_padding(len(manifest_bytes)))
    for part in parts:
        size += len(_header(part.name, part.size)) + part.size + len(_padding(part.size))
    return size + 2 * _BLOCK


def stream(s3: Minio, bucket: str, manifest_bytes: bytes, parts: list[Member]) -> Iterator[bytes]:
    """The archive, chunk by chunk (blocking: run it in a thread)."""
    yield _header(MANIFEST, len(manifest_bytes)) + manifest_bytes + _padding(len(manifest_bytes))
    for part in parts:
        assert part.bucket_key is not None
        yield _header(part.name, part.size)
        sent = 0
        for chunk in objects.stream(s3, bucket, part.bucket_key):
            sent += len(chunk)
            yield chunk
        if sent != part.size:
            raise OSError(f"{part.bucket_key} changed size while it was sent")
        yield _padding(part.size)
    yield b"\0" * (2 * _BLOCK)


class ArchiveRefused(ValueError):
    pass


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith("/") or "\\" in name or ".." in name.split("/"):
        return f"member {name!r} has an absolute path or a '..' segment"
    if member.issym() or member.islnk():
        return f"member {name!r} is a link"
    if not member.isfile():
        return f"member {name!r} is not a regular file"
    return None


# Extended headers (PAX records, GNU long names) are read whole by `tarfile`; ours are a few
# hundred bytes.
_HEADER_MAX_BYTES = 64 * 1024
_EXTENDED = frozenset(b"xgLK")


def _size(field: bytes) -> int | None:
    """A header's size field: octal text, or base-256 when its first bit is set."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return None


def _check_headers(path: Path) -> None:
    """Walk the raw 512-byte headers and refuse an extended header above its cap before
    `tarfile` would read it into memory."""
    with path.open("rb") as source:
        offset = 0
        while True:
            source.seek(offset)
            block = source.read(_BLOCK)
            if len(block) < _BLOCK or block == b"\0" * _BLOCK:
                return
            size = _size(block[124:136])
            if size is None:
                return  # tarfile reports it
            if block[156] in _EXTENDED and size > _HEADER_MAX_BYTES:
                raise ArchiveRefused(
                    f"an extended tar header is {size} bytes, above the limit of "
                    f"{_HEADER_MAX_BYTES}"
                )
            offset += _BLOCK + size + (-size % _BLOCK)


def check(
    path: Path, live_tables: set[str], *, manifest_max_bytes: int, member_max_bytes: int
) -> Manifest:
    """Read the whole archive at `path` and answer its manifest; raise `ArchiveRefused` with
    every problem found when anything differs from what the manifest says, or the manifest
    from what this code writes."""
    _check_headers(path)
    try:
        with tarfile.open(path, mode="r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or _member_problem(first):
                raise ArchiveRefused(f"the archive does not start with the file {MANIFEST}")
            if first.size > manifest_max_bytes:
                raise ArchiveRefused(
                    f"{MANIFEST} is {first.size} bytes, above the limit of {manifest_max_bytes}"
                )
            source = tar.extractfile(first)
            assert source is not None
            try:
                manifest = parse(source.read(manifest_max_bytes + 1))
            except (UnsupportedFormat, InvalidManifest) as exc:
                raise ArchiveRefused(f"unacceptable manifest: {exc}") from None
            problems = _manifest_problems(manifest, live_tables, member_max_bytes)
            if problems:
                raise ArchiveRefused(_shown(problems))
            expected = {m.name: m for m in members(manifest)}
            hashes = {f"{ROOT}{data_file(t.table)}": t.sha256 for t in manifest.tables}
            hashes |= {f"{ROOT}{layout.blob_key(o.sha256)}": o.sha256 for o in manifest.objects}
            seen: set[str] = set()
            for member in tar:
                if member is first:
                    continue
                problem = _member_problem(member)
                if problem is not None:
                    problems.append(problem)
                    continue
                if member.size > member_max_bytes:
                    problems.append(
                        f"member {member.name!r} is {member.size} bytes, above the limit of "
                        f"{member_max_bytes}"
                    )
                    continue
                if member.name not in expected or member.name in seen:
                    problems.append(f"unexpected member {member.name!r}")
                    continue
                seen.add(member.name)
                if member.size != expected[member.name].size:
                    problems.append(f"{member.name} does not match the manifest")
                    continue
                data = tar.extractfile(member)
                assert data is not None
                sha256, size = objects.read_sha256(data)
                if sha256 != hashes[member.name] or size != expected[member.name].size:
                    problems.append(f"{member.name} does not match the manifest")
            problems += [f"{name} is missing" for name in sorted(expected.keys() - seen)]
    except tarfile.TarError as exc:
        raise ArchiveRefused(f"not a readable tar archive: {exc}") from None
    if problems:
        raise ArchiveRefused(_shown(problems))
    return manifest


def _manifest_problems(manifest: Manifest, live_tables: set[str], member_max: int) -> list[str]:
    problems = [
        f"table {t.table!r} is not a table of this installation"
        for t in manifest.tables
        if t.table not in live_tables
    ]
    sizes = [(data_file(t.table), t.size) for t in manifest.tables]
    sizes += [(o.key, o.size) for o in manifest.objects]
    problems += [
        f"{name} is {size} bytes, above the limit of {member_max}"
        for name, size in sizes
        if size > member_max
    ]
    hashes: dict[str, int] = {}
    for entry in manifest.objects:
        if hashes.setdefault(entry.sha256, entry.size) != entry.size:
            problems.append(f"blob {entry.sha256} is listed with two sizes")
    return problems


def _shown(problems: list[str]) -> str:
    more = len(problems) - 5
    return "; ".join(problems[:5]) + (f" (and {more} more)" if more > 0 else "")


def store(s3: Minio, bucket: str, path: Path, manifest: Manifest, backup_id: str) -> None:
    """Write a checked archive's data files and missing blobs under the set `backup_id`."""
    present = {o.key for o in objects.listing(s3, bucket, layout.BLOBS)}
    files = {f"{ROOT}{data_file(t.table)}": data_file(t.table) for t in manifest.tables}
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            source = tar.extractfile(member)
            assert source is not None
            if member.name in files:
                key = layout.data_key(backup_id, files[member.name])
                s3.put_object(
                    bucket, key, cast(BinaryIO, source), member.size, content_type="text/csv"
                )
            else:
                key = member.name.removeprefix(ROOT)
                if key not in present:
                    objects.put(s3, bucket, key, source.read())
