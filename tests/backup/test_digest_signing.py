"""The SDK-private seam of `objects.DigestSigningMinio`: a checked copy's PUT is signed with
the SHA-256 the backup computed of the same bytes, instead of the SDK hashing them again.
These fail when the pinned minio changes what the seam relies on."""

import hashlib
import inspect
import os

from minio import Minio
from minio.credentials.credentials import Credentials

from loupe_backup.backups import objects


def test_the_private_call_keeps_the_signature_the_seam_overrides() -> None:
    params = list(inspect.signature(Minio._build_headers).parameters)
    assert params == ["self", "host", "headers", "body", "creds"]


def offline() -> objects.DigestSigningMinio:
    return objects.digest_signing(
        Minio("127.0.0.1:9", access_key="a", secret_key="b", secure=False)
    )


def test_a_known_digest_is_signed_as_given_and_the_body_is_not_hashed_again() -> None:
    body = b"the bytes"
    given = "0" * 64  # not the body's digest: shows the header was not recomputed
    headers, _ = offline()._build_headers(
        "host", {objects.CONTENT_SHA256: given}, body, Credentials("a", "b")
    )
    assert headers[objects.CONTENT_SHA256] == given
    assert headers["Content-Length"] == str(len(body))


def test_without_a_digest_the_sdk_hashes_the_body_as_before() -> None:
    body = b"the bytes"
    headers, _ = offline()._build_headers("host", {}, body, Credentials("a", "b"))
    assert headers[objects.CONTENT_SHA256] == hashlib.sha256(body).hexdigest()
    assert headers["Content-Length"] == str(len(body))


def test_the_signing_client_is_the_same_client() -> None:
    plain = Minio("127.0.0.1:9", access_key="a", secret_key="b", secure=False)
    signing = objects.digest_signing(plain)
    assert isinstance(signing, objects.DigestSigningMinio)
    assert signing._http is plain._http
    assert type(plain) is Minio


def test_a_checked_put_stores_the_bytes_type_and_metadata(bucket: tuple[Minio, str]) -> None:
    s3, name = bucket
    signing = objects.digest_signing(s3)
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    meta = {"kind": "master", "sha256": sha}
    objects.put_checked(signing, name, "blobs/ab/one", data, sha, "image/png", meta)
    fetched = objects.fetch(s3, name, "blobs/ab/one")
    assert fetched is not None
    assert (fetched.data, fetched.sha256) == (data, sha)
    assert fetched.content_type == "image/png"
    assert fetched.metadata == meta
    # Other requests of the signing client are the SDK's own.
    objects.put(signing, name, "state.json", b"{}", "application/json")
    assert objects.get_bytes(signing, name, "state.json") == b"{}"
