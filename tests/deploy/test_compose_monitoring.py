"""Static checks of the compose `monitoring` profile against the services and the files in
deploy/monitoring: every HTTP service scraped where compose runs it, with a token from a
mounted secret; the rules, dashboards and provisioning mounted where the configs look."""

import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.deploy.compose import (
    ENV_EXAMPLE,
    HTTP_SERVICES,
    ROOT,
    compose,
    env_file,
    environment,
    mounts,
    prefix,
    services,
)

MONITORING = ("prometheus", "alertmanager", "grafana")
MONITORING_DIR = ROOT / "deploy" / "monitoring"
PROMETHEUS_CONFIG = MONITORING_DIR / "prometheus" / "prometheus.yml"


@cache
def _prometheus() -> dict[str, Any]:
    loaded = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _scrape_jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in _prometheus()["scrape_configs"]}


def _targets(job: dict[str, Any]) -> set[str]:
    found = {t for c in job.get("static_configs", []) for t in c["targets"]}
    for sd in job.get("dns_sd_configs", []):
        assert sd.get("type", "SRV") == "A", f"{job['job_name']}: name lookups need type A"
        found |= {f"{name}:{sd['port']}" for name in sd["names"]}
    return found


def _mounted_at(service: str, target: str) -> Path:
    """The repository path mounted in `service` at (or above) `target`."""
    wanted = PurePosixPath(target)
    for kind, source, mount, _ in mounts(service):
        at = PurePosixPath(mount)
        if kind == "bind" and (wanted == at or at in wanted.parents):
            return ROOT / source / wanted.relative_to(mount)
    raise AssertionError(f"{service} mounts nothing at {target}")


def _secret_files(service: str) -> set[str]:
    declared = set(compose().get("secrets") or {})
    used = set()
    for entry in services()[service].get("secrets") or []:
        name = entry if isinstance(entry, str) else entry["source"]
        assert name in declared, f"{service} uses undeclared secret {name}"
        target = name if isinstance(entry, str) else entry.get("target", name)
        used.add(target if target.startswith("/") else f"/run/secrets/{target}")
    return used


def test_monitoring_services_run_only_in_their_profile() -> None:
    for service, spec in services().items():
        profiles = spec.get("profiles") or []
        if service in MONITORING:
            assert profiles == ["monitoring"], f"{service}: profiles {profiles}"
        else:
            assert not profiles, f"{service} must run without a profile, has {profiles}"


def test_prometheus_config_is_mounted_as_given() -> None:
    command = " ".join(services()["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert _mounted_at("prometheus", "/etc/prometheus/prometheus.yml") == PROMETHEUS_CONFIG


def test_every_http_service_is_scraped_at_its_compose_address() -> None:
    jobs = _scrape_jobs()
    for service, settings_class in HTTP_SERVICES.items():
        assert service in jobs, f"prometheus.yml has no job {service!r}"
        port = environment(service)[prefix(settings_class) + "PORT"]
        assert _targets(jobs[service]) == {f"{service}:{port}"}, f"job {service} targets"


def test_service_scrapes_use_a_mounted_token_file() -> None:
    mounted = _secret_files("prometheus")
    for service in HTTP_SERVICES:
        authorization = _scrape_jobs()[service].get("authorization") or {}
        path = authorization.get("credentials_file")
        assert path, f"job {service}: the services' /metrics needs a bearer token"
        assert path in mounted, f"job {service} reads {path}, mounted secrets are {mounted}"
        assert authorization.get("type", "Bearer") == "Bearer"


def test_every_rule_file_is_mounted_and_loaded() -> None:
    patterns = _prometheus()["rule_files"]
    rule_files = sorted((MONITORING_DIR / "prometheus" / "rules").glob("*.yaml"))
    assert rule_files
    loaded = set()
    for pattern in patterns:
        folder = _mounted_at("prometheus", str(PurePosixPath(pattern).parent))
        loaded |= set(folder.glob(PurePosixPath(pattern).name))
    unloaded = set(rule_files) - loaded
    assert not unloaded, f"rule files Prometheus never loads: {sorted(unloaded)}"


def test_alerts_go_to_the_compose_alertmanager() -> None:
    targets = {
        t
        for am in _prometheus()["alerting"]["alertmanagers"]
        for c in am["static_configs"]
        for t in c["targets"]
    }
    assert targets == {"alertmanager:9093"}
    config = " ".join(services()["alertmanager"]["command"])
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in config
    mounted = _mounted_at("alertmanager", "/etc/alertmanager/alertmanager.yml")
    assert mounted.is_file()
    assert "receivers" in yaml.safe_load(mounted.read_text())


def test_grafana_provisioning_and_dashboards_are_mounted() -> None:
    for kind in ("dashboards", "datasources"):
        mounted = _mounted_at("grafana", f"/etc/grafana/provisioning/{kind}")
        assert mounted == MONITORING_DIR / "grafana" / "provisioning" / kind
    provider = yaml.safe_load(
        (MONITORING_DIR / "grafana/provisioning/dashboards/loupe.yaml").read_text()
    )
    for entry in provider["providers"]:
        folder = _mounted_at("grafana", entry["options"]["path"])
        assert folder == MONITORING_DIR / "grafana" / "dashboards"
        assert sorted(folder.glob("*.json")), "no dashboards to provision"
    sources = yaml.safe_load(
        (MONITORING_DIR / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    urls = {s["url"] for s in sources["datasources"] if s["type"] == "prometheus"}
    assert urls == {"http://prometheus:9090"}


def test_monitoring_secrets_come_from_the_environment_example() -> None:
    example = (ROOT / "deploy" / "compose.env.example").read_text()
    for name, spec in (compose().get("secrets") or {}).items():
        variable = spec.get("environment")
        assert variable, f"secret {name} must be read from an environment variable"
        assert f"\n{variable}=" in "\n" + example, f"compose.env.example lacks {variable}"


def test_the_images_service_has_a_capacity_source_for_the_storage_alerts() -> None:
    """The storage alerts divide by the object store's capacity: in compose (MinIO, which
    reports none over S3) that is the quota `.env` sets, given a value by the example."""
    given = environment("images")
    settings = HTTP_SERVICES["images"]
    quota = given.get(prefix(settings) + "STORE_QUOTA_BYTES", "")
    admin = given.get(prefix(settings) + "STORE_ADMIN_URL", "")
    assert quota or admin, "compose gives the images service no capacity source"
    variable = re.fullmatch(r"\$\{(\w+):-0\}", quota)
    assert variable, f"the quota is not taken from the environment: {quota!r}"
    assert int(env_file(ENV_EXAMPLE)[variable.group(1)]) > 0, (
        "the example leaves the storage alerts silent"
    )
