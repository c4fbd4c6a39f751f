"""The SDK-private seam: backup lists objects through minio's private `Minio._url_open`
(`loupe_backup.backups.objects.PrivateListObjectsV2`). These fail when the pinned minio
changes what the seam relies on, before a backup lists the wrong objects silently."""

import inspect
import io

from minio import Minio

from loupe_backup.backups import objects


def test_the_private_calls_keep_the_signature_the_seam_calls() -> None:
    url_open = inspect.signature(Minio._url_open)
    params = url_open.parameters
    assert list(params)[:3] == ["self", "method", "region"]
    for name in ("bucket_name", "query_params"):
        assert name in params
        assert params[name].kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
    get_region = inspect.signature(Minio._get_region)
    assert list(get_region.parameters) == ["self", "bucket_name"]


# Keys that XML escapes (&, <, >, quotes), spaces, non-ASCII, nesting; one outside the prefix.
KEYS = [
    "blobs/ab/plain",
    "blobs/ab/a&b<c>d",
    "blobs/ab/quote\"and'apostrophe",
    "blobs/cd/with space",
    "blobs/cd/ünïcödé",
    "blobs/ef/deep/er/still",
    "blobs/ef/x",
    "other/outside",
]


def test_the_seam_lists_what_list_objects_lists(bucket: tuple[Minio, str]) -> None:
    s3, name = bucket
    for n, key in enumerate(KEYS):
        data = b"x" * (n + 1)
        s3.put_object(name, key, io.BytesIO(data), len(data))

    def sdk(prefix: str) -> list[objects.Listed]:
        return [
            objects.Listed(o.object_name, int(o.size or 0), (o.etag or "").strip('"'))
            for o in s3.list_objects(name, prefix=prefix, recursive=True)
            if o.object_name is not None and not o.is_dir
        ]

    expected = sdk("blobs/")
    assert len(expected) == len(KEYS) - 1
    # A page of two keys: the continuation tokens are followed to the end.
    assert list(objects.PrivateListObjectsV2(s3, page_size=2)(name, "blobs/")) == expected
    assert list(objects.listing(s3, name, "blobs/")) == expected
    assert list(objects.listing(s3, name, "")) == sdk("")
    assert list(objects.listing(s3, name, "nothing/")) == []
    # This object store writes each entry in the usual order: its pages are read in one pass.
    page = objects.PrivateListObjectsV2(s3).page(name, "blobs/")
    assert len(objects._ENTRY.findall(page)) == page.count(b"<Contents>") == len(expected)
    # The names only: the last segment of each key, unescaped.
    assert objects.names(s3, name, "blobs/") == {e.key.rsplit("/", 1)[-1] for e in expected}
    assert objects.names(s3, name, "") == {k.rsplit("/", 1)[-1] for k in KEYS}
    assert objects.names(s3, name, "nothing/") == set()


def test_a_listing_page_is_read_in_any_field_order_with_its_quotes_unescaped() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name>'
        b"<Contents><Key>blobs/ab/a&amp;b&lt;c&gt;</Key><LastModified>2026-12-05T09:00:00Z"
        b"</LastModified><ETag>&#34;0123&#34;</ETag><Size>17</Size></Contents>"
        b"<Contents><Size>5</Size><ETag>&quot;4567&quot;</ETag><Key>blobs/cd/&#34;q&#34;</Key>"
        b"</Contents>"
        b'<Contents><Key>blobs/ef/x</Key><ETag>"89ab-2"</ETag><Size>0</Size></Contents>'
        b"<Contents><Key>blobs/folder/</Key><Size>0</Size></Contents>"
        b"<Contents><Key>blobs/no-etag</Key><Size>3</Size></Contents>"
        b"<IsTruncated>false</IsTruncated></ListBucketResult>"
    )
    assert list(objects.parse_listing(body)) == [
        objects.Listed("blobs/ab/a&b<c>", 17, "0123"),
        objects.Listed('blobs/cd/"q"', 5, "4567"),
        objects.Listed("blobs/ef/x", 0, "89ab-2"),
        objects.Listed("blobs/no-etag", 3, ""),
    ]
    assert list(objects.parse_listing(b"<ListBucketResult></ListBucketResult>")) == []


def test_a_page_in_the_usual_field_order_reads_the_same_as_field_by_field() -> None:
    entries = [
        b"<Contents><Key>blobs/ab/a&amp;b</Key><LastModified>2026-12-05T09:00:00Z</LastModified>"
        b"<ETag>&#34;0123&#34;</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>17</Size>"
        b"<Owner><ID>0</ID></Owner><StorageClass>STANDARD</StorageClass></Contents>",
        b"<Contents><Key>blobs/folder/</Key><ETag>&quot;d41d&quot;</ETag><Size>0</Size></Contents>",
        b'<Contents><Key>blobs/cd/x</Key><ETag>"4567-2"</ETag><Size>5</Size></Contents>',
    ]
    usual = b"<ListBucketResult>" + b"".join(entries) + b"</ListBucketResult>"
    expected = [
        objects.Listed("blobs/ab/a&b", 17, "0123"),
        objects.Listed("blobs/cd/x", 5, "4567-2"),
    ]
    assert list(objects.parse_listing(usual)) == expected
    # One entry out of the usual order: the whole page is read field by field, the same.
    swapped = b'<Contents><Key>blobs/ef/y</Key><Size>9</Size><ETag>"89"</ETag></Contents>'
    mixed = usual.replace(b"</ListBucketResult>", swapped + b"</ListBucketResult>")
    assert list(objects.parse_listing(mixed)) == [*expected, objects.Listed("blobs/ef/y", 9, "89")]
