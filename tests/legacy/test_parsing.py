"""The export's shapes, the master images and the config upgrade, without any server."""

import base64
import json
from typing import Any

import pytest

from loupe_catalog.legacy import images, parsing
from loupe_catalog.legacy.service import prepare
from loupe_catalog.legacy.upgrade import ConfigError, upgrade_config
from tests.legacy.helpers import data_url, fixture_programs, image_bytes, legacy_program

MiB = 1024 * 1024


def test_the_three_shapes_read_the_same_programs() -> None:
    programs = fixture_programs()
    as_array = parsing.parse(json.dumps(programs).encode())
    local_storage = {
        "vision_programs": json.dumps(programs),
        "vision_settings": json.dumps({"theme": "dark"}),
    }
    as_object = parsing.parse(json.dumps(local_storage).encode())
    assert as_array.shape == "array"
    assert as_object.shape == "localstorage"
    assert [e.legacy_id for e in as_object.entries] == [e.legacy_id for e in as_array.entries]
    assert [e.source_checksum for e in as_object.entries] == [
        e.source_checksum for e in as_array.entries
    ]

    # A backup file keeps the images beside the programs.
    stripped = json.loads(json.dumps(programs))
    backup_images = {}
    for program in stripped:
        image = program["config"].pop("masterImage", None)
        if image is not None:
            backup_images[program["id"]] = image
    backup = {
        "version": "1.0.0",
        "timestamp": "2025-10-08T10:30:00Z",
        "metadata": {"programCount": len(stripped)},
        "data": {"programs": stripped, "images": backup_images},
    }
    as_backup = parsing.parse(json.dumps(backup).encode())
    assert as_backup.shape == "backup"
    assert [e.image for e in as_backup.entries] == [e.image for e in as_array.entries]


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b'[{"id": "prog_1", "name": "x", "config": {', "not_json", "not JSON"),
        (b'["\xff"]', "not_json", "UTF-8"),
        (b"42", "wrong_shape", "got a JSON int"),
        (b'{"theme": "dark"}', "wrong_shape", "no vision_programs key"),
        (b'{"vision_programs": "[{"}', "wrong_shape", "not JSON"),
        (b'{"vision_programs": {"a": 1}}', "wrong_shape", "must be an array"),
        (b'{"data": {"programs": [], "images": []}}', "wrong_shape", "data.images"),
    ],
)
def test_unreadable_exports_are_refused_as_a_whole(body: bytes, code: str, words: str) -> None:
    with pytest.raises(parsing.InputError) as caught:
        parsing.parse(body)
    assert caught.value.code == code
    assert words in str(caught.value)


def test_unreadable_programs_are_reported_one_by_one() -> None:
    good = legacy_program()
    entries = parsing.parse(
        json.dumps(
            [
                "not a program",
                {"name": "no id"},
                {"id": "p1"},
                {"id": "p2", "name": "x", "config": 3},
                good,
                {"id": "p3", "name": "x" * 201},
                {"id": "p4", "name": "line\nbreak"},
            ]
        ).encode()
    ).entries
    problems = [e.problem for e in entries]
    assert problems[0] == "a program must be an object"
    assert problems[1] is not None
    assert problems[1].startswith("no id")
    assert problems[2] == "no name"
    assert problems[3] == "config must be an object"
    assert problems[4] is None
    assert (
        problems[5]
        == problems[6]
        == ("the name must be at most 200 characters, without control characters")
    )


def test_images_are_typed_by_their_bytes() -> None:
    jpeg = image_bytes(".jpg")
    decoded = images.decode(data_url(jpeg, "image/jpeg"), MiB)
    assert decoded.data == jpeg
    assert decoded.content_type == "image/jpeg"
    assert decoded.warnings == []

    lying = images.decode(data_url(jpeg, "image/png"), MiB)
    assert lying.content_type == "image/jpeg"
    assert lying.warnings == [
        "declared image/png, but the bytes are image/jpeg: stored as image/jpeg"
    ]

    # Bare base64, as backup files keep images.
    assert images.decode(base64.b64encode(jpeg).decode(), MiB).sha256 == decoded.sha256


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("data:image/png;base64,@@@not base64@@@", "bad_base64"),
        ("data:image/png;base64,iVBORw0KGgo", "not_an_image"),
        ("data:image/png,rawtext", "bad_base64"),
        ("data:image/png;base64" + "A" * 40, "bad_base64"),
        (data_url(b"not really a jpeg" * 10, "image/jpeg"), "not_an_image"),
        (data_url(b"GIF89a" + b"\x00" * 40, "image/gif"), "unsupported_image_type"),
        ("data:image/png;base64," + "A" * (2 * MiB), "image_too_large"),
    ],
)
def test_bad_images_say_why(value: str, code: str) -> None:
    with pytest.raises(images.ImageError) as caught:
        images.decode(value, MiB)
    assert caught.value.code == code


def test_the_fixture_config_upgrades_to_the_current_version() -> None:
    legacy = dict(fixture_programs()[0]["config"])
    del legacy["masterImage"]
    upgraded = upgrade_config(legacy)
    assert (upgraded.from_version, upgraded.to_version) == (1, 3)
    assert upgraded.config == {
        "schema_version": 3,
        "tools": [
            {
                "id": "tool_0",
                "name": "Check 1",
                "enabled": True,
                "roi": {"x": 191, "y": 102, "width": 120, "height": 90},
                "type": "presence",
                "threshold": 30.0,
                "min_defect_area": 31,
            },
            {
                "id": "tool_1",
                "name": "Check 2",
                "enabled": True,
                "roi": {"x": 12, "y": 15, "width": 120, "height": 90},
                "type": "difference",
                "threshold": 20.0,
                "min_defect_area": 22,
                "max_defects": 0,
            },
            {
                "id": "tool_2",
                "name": "Check 3",
                "enabled": True,
                "roi": {"x": 243, "y": 129, "width": 120, "height": 90},
                "type": "brightness",
                "threshold": 56.0,
                "min_defect_area": 45,
            },
        ],
        "alignment": {"method": "ecc", "max_shift_px": 20.0, "max_rotation_deg": 2.0, "scale": 0.5},
        "acquisition": {"trigger_mode": "internal", "exposure": 100.0},
    }


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"tools": [{"type": "laser", "roi": {"x": 0, "y": 0, "width": 1, "height": 1}}]}, "laser"),
        (
            {"tools": [{"type": "presence", "roi": {"x": -5, "y": 0, "width": 1, "height": 1}}]},
            "roi.x",
        ),
        ({"tools": ["presence"]}, "not an object"),
        ({"tools": [], "triggerMode": "sometimes"}, "trigger_mode"),
        ({"schema_version": 9, "tools": []}, "newer"),
    ],
)
def test_configs_that_cannot_be_upgraded_say_why(config: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        upgrade_config(config)
    assert words in str(caught.value)


def test_prepare_reports_each_program() -> None:
    png = data_url(image_bytes(".png", seed=1))
    first = legacy_program(image=png)
    programs = [
        first,
        dict(first),  # the same id again
        legacy_program(image="data:image/png;base64,%%%"),
        legacy_program(extra_config={"triggerMode": "sometimes"}),
        legacy_program(),  # a draft without a master image
    ]
    planned = prepare(parsing.parse(json.dumps(programs).encode()).entries, MiB)
    outcomes = [(p.item.outcome, p.item.reason_code) for p in planned]
    assert outcomes == [
        ("imported", None),
        ("duplicate", "duplicate_legacy_id"),
        ("invalid", "bad_base64"),
        ("invalid", "config_not_upgradable"),
        ("imported", None),
    ]
    assert planned[0].item.master_image_sha256 is not None
    assert planned[4].item.master_image_sha256 is None
    assert planned[0].item.config_from_version == 1
