"""Reading docker-compose.yml and the services' settings, for the deploy checks (compose, its
monitoring profile, the Kubernetes manifests). Static: no Docker engine, no cluster."""

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from loupe_backup.settings import BackupSettings
from loupe_catalog.settings import CatalogSettings
from loupe_images.settings import ImagesSettings
from loupe_inspect.settings import InspectSettings
from loupe_stack.bootstrap import SetupSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"

HTTP_SERVICES: dict[str, type[BaseSettings]] = {
    "catalog": CatalogSettings,
    "images": ImagesSettings,
    "backup": BackupSettings,
    "inspect": InspectSettings,
}
JOBS: dict[str, type[BaseSettings]] = {"migrate": CatalogSettings, "setup": SetupSettings}
SETTINGS: dict[str, type[BaseSettings]] = {**HTTP_SERVICES, **JOBS}
# Settings whose defaults are right wherever Loupe is deployed.
OPTIONAL_FIELDS = {"db_pool_size", "s3_secure", "s3_region"}


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose().get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services mapping"
    assert found, "docker-compose.yml defines no services"
    return found


def environment(service: str) -> dict[str, str]:
    raw = services()[service].get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.partition("=") for item in raw)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def depends_on(service: str) -> dict[str, str]:
    """Each dependency with its condition (`service_started` for the list form)."""
    raw = services()[service].get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def mounts(service: str) -> list[tuple[str, str, str, bool]]:
    """(type, source, target, read_only) of each volume entry; type is `volume` or `bind`."""
    found = []
    for entry in services()[service].get("volumes") or []:
        if isinstance(entry, dict):
            source, target = str(entry.get("source", "")), str(entry["target"])
            kind = str(entry.get("type", "volume"))
            read_only = bool(entry.get("read_only", False))
        else:
            source, _, rest = str(entry).partition(":")
            target, _, mode = rest.partition(":")
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            read_only = "ro" in mode.split(",")
        found.append((kind, source, target, read_only))
    return found


def prefix(settings_class: type[BaseSettings]) -> str:
    return str(settings_class.model_config["env_prefix"])


def required_fields(settings_class: type[BaseSettings]) -> list[str]:
    """The settings a deployment must give: where the servers are, and the buckets."""
    return sorted(
        name
        for name in settings_class.model_fields
        if name == "host"
        or name in ("images_bucket", "backup_bucket")
        or (name.startswith(("db_", "nats_", "s3_")) and name not in OPTIONAL_FIELDS)
    )


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines; blank lines and # comments skipped (compose's `.env`, kustomize's env
    files)."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: {line!r} is not KEY=value"
            pairs[key] = value
    return pairs
