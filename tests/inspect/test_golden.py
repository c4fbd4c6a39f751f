"""Golden sets: labelled captures attached to a revision in the catalog, and test runs that
inspect them through the workers (`rpc.inspect.evaluate`) and store the confusion matrix."""

import hashlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from loupe_images.images import storage
from tests.inspect import synthetic
from tests.inspect.conftest import Rig, Workers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def golden(rig: Rig, suite_program: dict[str, Any]) -> dict[str, Any]:
    """Two good and two bad captures of the suite program's part (same master)."""
    good = [synthetic.make_case(seed, bad=False) for seed in (0, 28)]
    bad = [synthetic.make_case(seed, bad=True) for seed in (1, 29)]
    assert all((c.master == good[0].master).all() for c in good + bad)
    program_id, _ = rig.program(synthetic.program_config(good[0].roi), suite_program["master"])
    return {
        "program_id": program_id,
        "good": [rig.upload(synthetic.encode_png(c.capture)) for c in good],
        "bad": [rig.upload(synthetic.encode_png(c.capture)) for c in bad],
    }


@pytest.fixture
def catalog(rig: Rig) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rig.catalog_url, headers=rig.engineer, timeout=120) as client:
        yield client


def base(golden: dict[str, Any], revision: int = 1) -> str:
    return f"/api/programs/{golden['program_id']}/revisions/{revision}"


def test_attach_relabel_and_remove_golden_images(
    rig: Rig, catalog: httpx.Client, golden: dict[str, Any]
) -> None:
    url = base(golden)
    sha = golden["good"][0]
    assert catalog.put(f"{url}/golden-set/{sha}", json={"label": "bad"}).status_code == 201
    # A capture in a golden set is kept like a master image: deleting it is refused.
    refused = httpx.delete(f"{rig.images_url}/api/images/{sha}", headers=rig.engineer)
    assert refused.status_code == 409, refused.text
    assert golden["program_id"] in refused.text
    again = catalog.put(f"{url}/golden-set/{sha}", json={"label": "good", "note": "fine"})
    assert again.status_code == 200
    listed = catalog.get(f"{url}/golden-set").json()
    assert [(i["capture_sha256"], i["label"], i["note"]) for i in listed["items"]] == [
        (sha, "good", "fine")
    ]
    assert catalog.delete(f"{url}/golden-set/{sha}").status_code == 204
    assert catalog.get(f"{url}/golden-set").json()["items"] == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/golden-set/{sha}", {"label": "perhaps"}, 422),
        ("/golden-set/{sha}", {"label": "good", "extra": 1}, 422),
        ("/golden-set/{sha}", {"label": "good", "note": "a\u0000b"}, 422),
        ("/golden-set/{sha}", {"label": "good", "note": "n" * 501}, 422),
        ("/golden-set/" + "f" * 64, {"label": "good"}, 422),  # not a stored image
        ("/golden-set/NOT-A-SHA", {"label": "good"}, 422),
    ],
)
def test_bad_golden_input_is_refused_and_changes_nothing(
    catalog: httpx.Client, golden: dict[str, Any], path: str, body: dict[str, Any], status: int
) -> None:
    url = base(golden)
    answer = catalog.put(url + path.format(sha=golden["good"][0]), json=body)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert catalog.get(f"{url}/golden-set").json()["items"] == []


def test_unknown_revisions_and_runs_are_404(catalog: httpx.Client, golden: dict[str, Any]) -> None:
    for revision in (2**31, 2**64):
        answer = catalog.get(f"{base(golden, revision=revision)}/golden-set")
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["field"] == "path:revision"
    missing = base(golden, revision=99)
    assert catalog.get(f"{missing}/golden-set").status_code == 404
    answer = catalog.put(f"{missing}/golden-set/{golden['good'][0]}", json={"label": "good"})
    assert answer.status_code == 404
    assert catalog.get(f"{missing}/test-runs").status_code == 404
    run = "00000000-0000-4000-8000-000000000000"
    assert catalog.get(f"{base(golden)}/test-runs/{run}").status_code == 404
    assert catalog.delete(f"{base(golden)}/golden-set/{golden['good'][0]}").status_code == 404


def test_a_run_needs_golden_images_and_a_worker(
    rig: Rig, catalog: httpx.Client, golden: dict[str, Any]
) -> None:
    url = base(golden)
    assert catalog.post(f"{url}/test-runs").status_code == 409
    sha = golden["good"][0]
    assert catalog.put(f"{url}/golden-set/{sha}", json={"label": "good"}).status_code == 201
    try:
        answer = catalog.post(f"{url}/test-runs")  # no worker in this namespace now
        assert answer.status_code == 503
        assert "No inspection worker" in answer.json()["detail"]
        assert catalog.get(f"{url}/test-runs").json()["items"] == []
    finally:
        catalog.delete(f"{url}/golden-set/{sha}")


def test_a_test_run_answers_the_confusion_matrix_and_is_stored(
    rig: Rig, catalog: httpx.Client, golden: dict[str, Any], tmp_path: Path
) -> None:
    url = base(golden)
    for label in ("good", "bad"):
        for sha in golden[label]:
            assert catalog.put(f"{url}/golden-set/{sha}", json={"label": label}).status_code == 201
    workers = Workers(rig, rig.namespace, tmp_path)
    try:
        workers.start(1)
        first = catalog.post(f"{url}/test-runs")
        assert first.status_code == 201, first.text
        run = first.json()
        assert run["confusion"] == {
            "true_accepts": 2,
            "false_rejects": 0,
            "true_rejects": 2,
            "false_accepts": 0,
            "errors": 0,
        }
        assert run["passed"] is True
        verdicts = {i["capture_sha256"]: i["verdict"] for i in run["images"]}
        assert verdicts == {
            **dict.fromkeys(golden["good"], "pass"),
            **dict.fromkeys(golden["bad"], "fail"),
        }
        # A bad part labelled good now counts as a false reject: the run fails.
        escaped = golden["bad"][0]
        assert catalog.put(f"{url}/golden-set/{escaped}", json={"label": "good"}).status_code == 200
        second = catalog.post(f"{url}/test-runs").json()
        assert second["confusion"]["false_rejects"] == 1
        assert second["confusion"]["true_rejects"] == 1
        assert second["passed"] is False
        [wrong] = [i for i in second["images"] if not i["correct"]]
        assert wrong["capture_sha256"] == escaped
        assert wrong["defects"] >= 1
    finally:
        workers.stop()
    runs = catalog.get(f"{url}/test-runs").json()["items"]
    assert [r["id"] for r in runs] == [second["id"], run["id"]]
    stored = catalog.get(f"{url}/test-runs/{run['id']}").json()
    assert stored["confusion"] == run["confusion"]
    assert stored["data_checksum"] == run["data_checksum"]


def _capture(rng: np.random.Generator) -> bytes:
    ok, encoded = cv2.imencode(".png", rng.integers(0, 255, size=(48, 64), dtype=np.uint8))
    assert ok
    return bytes(encoded.tobytes())


def test_a_capture_answered_201_can_join_a_golden_set_at_once(
    rig: Rig, catalog: httpx.Client, suite_program: dict[str, Any]
) -> None:
    """Upload, then attach with no pause, 50 times: the catalog asks the images service
    whenever the capture's `images.stored` event has not arrived yet."""
    config = synthetic.program_config(synthetic.make_case(0, bad=False).roi)
    program_id, revision = rig.program(config, suite_program["master"])
    url = f"/api/programs/{program_id}/revisions/{revision}/golden-set"
    rng = np.random.default_rng(uuid.uuid4().int)
    attached = 0
    refusals: list[str] = []
    for _ in range(50):
        sha = rig.upload(_capture(rng))
        answer = catalog.put(f"{url}/{sha}", json={"label": "good"})
        if answer.status_code == 201:
            attached += 1
        else:
            refusals.append(f"{answer.status_code} {answer.text}")
    assert refusals == []
    assert attached == 50
    assert len(catalog.get(url).json()["items"]) == 50


def test_a_capture_whose_event_never_came_is_found_at_the_images_service(
    rig: Rig, catalog: httpx.Client, golden: dict[str, Any]
) -> None:
    """A blob the images service holds, of which the catalog has heard nothing (as if its
    `images.stored` event were late): attaching it succeeds and records the image."""
    data = _capture(np.random.default_rng(uuid.uuid4().int))
    sha = hashlib.sha256(data).hexdigest()
    image = storage.StoredImage(
        sha256=sha,
        size=len(data),
        width=64,
        height=48,
        content_type="image/png",
        kind="capture",
        filename="late.png",
        line_id="line-7",
        tags=[],
        upload_id=uuid.uuid4().hex,
    )
    storage.put(rig.store.s3, rig.bucket, image, io.BytesIO(data))
    assert catalog.get(f"/api/image-records/{sha}").status_code == 404
    url = base(golden)
    try:
        answer = catalog.put(f"{url}/golden-set/{sha}", json={"label": "bad"})
        assert answer.status_code == 201, answer.text
        record = catalog.get(f"/api/image-records/{sha}")
        assert record.status_code == 200
        assert (record.json()["source"], record.json()["kind"]) == ("images-service", "capture")
    finally:
        catalog.delete(f"{url}/golden-set/{sha}")
