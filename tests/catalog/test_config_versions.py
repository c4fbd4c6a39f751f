"""Each config migration step, and the chain from the oldest shape to the current one."""

from typing import Any

import pytest

from loupe_catalog.programs import config

LEGACY_V1: dict[str, Any] = {
    "masterImage": "data:image/png;base64,AAAA",
    "tools": [
        {
            "id": "tool_0",
            "type": "presence",
            "name": "Check 1",
            "roi": {"x": 191, "y": 102, "width": 120, "height": 90},
            "threshold": 30,
            "minDefectArea": 31,
        },
        {
            "id": "tool_1",
            "type": "diff",
            "name": "Check 2",
            "roi": {"x": 12, "y": 15, "width": 120, "height": 90},
            "threshold": 20,
            "minDefectArea": 22,
        },
    ],
    "triggerMode": "internal",
    "exposure": 100,
}


def test_every_version_below_current_has_a_step() -> None:
    assert sorted(config.MIGRATIONS) == list(range(1, config.CURRENT_VERSION))


def test_v1_to_v2() -> None:
    v2 = config.v1_to_v2(LEGACY_V1)
    assert v2["schema_version"] == 2
    assert "masterImage" not in v2  # the image is referenced by hash beside the config
    assert v2["tools"][1] == {
        "id": "tool_1",
        "name": "Check 2",
        "type": "difference",
        "roi": {"x": 12, "y": 15, "width": 120, "height": 90},
        "threshold": 20,
        "min_defect_area": 22,
    }
    assert v2["acquisition"] == {"trigger_mode": "internal", "exposure": 100}


def test_v1_unknown_tool_type_is_named() -> None:
    with pytest.raises(config.ConfigUpgradeError, match=r"tools\.0\.type"):
        config.v1_to_v2({"tools": [{"type": "laser"}]})


def test_v2_to_v3() -> None:
    v2 = config.v1_to_v2(LEGACY_V1)
    v3 = config.v2_to_v3(v2)
    assert v3["schema_version"] == 3
    assert all(tool["enabled"] is True for tool in v3["tools"])
    assert v3["alignment"] == {
        "method": "ecc",
        "max_shift_px": 20.0,
        "max_rotation_deg": 2.0,
        "scale": 0.5,
    }


def test_chain_validates_as_current() -> None:
    upgraded, original = config.upgrade(LEGACY_V1)
    assert original == 1
    model = config.ProgramConfig.model_validate(upgraded)
    assert [t.type for t in model.tools] == ["presence", "difference"]


def test_current_config_is_untouched_and_newer_is_refused() -> None:
    current = {"schema_version": 3, "tools": []}
    assert config.upgrade(current) == (current, 3)
    with pytest.raises(config.ConfigUpgradeError, match="newer"):
        config.upgrade({"schema_version": 4})
    with pytest.raises(config.ConfigUpgradeError):
        config.upgrade({"schema_version": "three"})


def test_fixture_configs_upgrade(shared_fixture: list[dict[str, Any]]) -> None:
    for program in shared_fixture:
        upgraded, _ = config.upgrade(program["config"])
        config.ProgramConfig.model_validate(upgraded)


@pytest.fixture
def shared_fixture() -> list[dict[str, Any]]:
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "fixtures" / "legacy-localstorage.json"
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return data
