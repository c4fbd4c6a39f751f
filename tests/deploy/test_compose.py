"""Static checks of docker-compose.yml and deploy/: they need no Docker engine."""

import re
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from tests.deploy.compose import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    HTTP_SERVICES,
    ROOT,
    SETTINGS,
    compose,
    depends_on,
    environment,
    mounts,
    prefix,
    required_fields,
    services,
)

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CADDYFILE = ROOT / "deploy" / "Caddyfile"

ONE_SHOT = ("migrate", "setup")
GATEWAY = "caddy"
GRAFANA = "grafana"
SECRETS = (
    "LOUPE_PG_PASSWORD",
    "LOUPE_NATS_PASSWORD",
    "LOUPE_S3_ACCESS_KEY",
    "LOUPE_S3_SECRET_KEY",
    "LOUPE_ADMIN_TOKEN",
)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


@pytest.mark.parametrize(("service", "settings_class"), list(SETTINGS.items()))
def test_every_service_gets_its_required_settings(
    service: str, settings_class: type[BaseSettings]
) -> None:
    assert service in services(), f"compose service {service!r} is missing"
    env_prefix = prefix(settings_class)
    given = environment(service)
    missing = [
        env_prefix + name.upper()
        for name in required_fields(settings_class)
        if env_prefix + name.upper() not in given
    ]
    assert not missing, f"compose service {service!r} does not set {missing}"


def test_http_services_listen_on_all_interfaces() -> None:
    for service, settings_class in HTTP_SERVICES.items():
        key = prefix(settings_class) + "HOST"
        value = environment(service).get(key)
        assert value == "0.0.0.0", f"{service}: {key} is {value!r}, the gateway needs 0.0.0.0"


def test_depends_on_names_defined_services() -> None:
    for service in services():
        unknown = set(depends_on(service)) - set(services())
        assert not unknown, f"{service} depends on undefined services {sorted(unknown)}"


def test_http_services_wait_for_setup_and_healthy_servers() -> None:
    for service in HTTP_SERVICES:
        depends = depends_on(service)
        for job in ONE_SHOT:
            assert depends.get(job) == "service_completed_successfully", (
                f"{service} must wait for {job} with service_completed_successfully"
            )
        for name, condition in depends.items():
            if name not in ONE_SHOT:
                assert condition == "service_healthy", (
                    f"{service} waits for {name} with {condition}, expected service_healthy"
                )


def test_long_running_services_have_healthchecks() -> None:
    for service, spec in services().items():
        if service not in ONE_SHOT:
            assert (spec.get("healthcheck") or {}).get("test"), f"{service} has no healthcheck"
    for service, settings_class in HTTP_SERVICES.items():
        port = environment(service)[prefix(settings_class) + "PORT"]
        probe = " ".join(services()[service]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in probe, f"{service} healthcheck must hit its /readyz"


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(compose().get("volumes") or {})
    used = {
        source
        for service in services()
        for kind, source, _, _ in mounts(service)
        if kind == "volume" and source
    }
    assert used <= declared, f"volumes used but not declared: {sorted(used - declared)}"
    assert declared <= used, f"volumes declared but never used: {sorted(declared - used)}"


def test_builds_use_the_deploy_dockerfile() -> None:
    built = {name: spec["build"] for name, spec in services().items() if "build" in spec}
    assert set(HTTP_SERVICES) | set(ONE_SHOT) <= set(built), "every Loupe service is built"
    for service, build in built.items():
        assert isinstance(build, dict), f"{service}: build must name context and dockerfile"
        context, dockerfile = build.get("context"), build.get("dockerfile")
        assert context == ".", f"{service}: build context is {context!r}, expected '.'"
        assert dockerfile == "deploy/Dockerfile", f"{service}: dockerfile is {dockerfile!r}"
    assert DOCKERFILE.is_file(), "deploy/Dockerfile does not exist"


def test_mounted_repo_files_exist() -> None:
    for service in services():
        for kind, source, target, _ in mounts(service):
            if kind == "bind":
                assert (ROOT / source).exists(), f"{service} mounts {source} (at {target}), missing"


def test_repo_files_are_mounted_read_only() -> None:
    for service in services():
        for kind, source, _, read_only in mounts(service):
            if kind == "bind":
                assert read_only, f"{service} mounts {source} writable; mount it :ro"


def test_images_have_explicit_tags() -> None:
    for service, spec in services().items():
        image = spec.get("image")
        if image is None:
            assert "build" in spec, f"{service} has neither image nor build"
            continue
        name, _, tag = str(image).rpartition(":")
        tagged = bool(name) and "/" not in tag
        assert tagged, f"{service}: image {image!r} has no tag"
        assert tag != "latest", f"{service}: image {image!r} must pin a version, not latest"


def test_gateway_upstreams_match_services() -> None:
    upstreams = {
        key: value
        for key, value in environment(GATEWAY).items()
        if re.fullmatch(r"LOUPE_\w+_UPSTREAM", key)
    }
    routed = set()
    for key, value in upstreams.items():
        host, _, port = value.rpartition(":")
        assert host in HTTP_SERVICES, f"{key}={value}: {host!r} is not a Loupe HTTP service"
        service_port = environment(host).get(prefix(HTTP_SERVICES[host]) + "PORT")
        assert port == service_port, f"{key}={value}, but {host} listens on {service_port}"
        routed.add(host)
    assert routed == set(HTTP_SERVICES), f"the gateway routes to {sorted(routed)} only"


def test_caddyfile_reads_gateway_environment() -> None:
    caddyfile = CADDYFILE.read_text()
    unread = [key for key in environment(GATEWAY) if "{$" + key not in caddyfile]
    assert not unread, f"deploy/Caddyfile never reads {unread}"


def test_catalog_reaches_images_service() -> None:
    images_port = environment("images")["IMAGES_PORT"]
    url = environment("catalog").get("CATALOG_IMAGES_URL")
    assert url == f"http://images:{images_port}", f"CATALOG_IMAGES_URL is {url!r}"


def _published(port: Any) -> tuple[str, str]:
    """(host address, container port) of a `ports` entry."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), str(port["target"])
    parts = str(port).split(":")
    return (parts[0] if len(parts) == 3 else ""), parts[-1].split("/")[0]


def test_only_the_gateway_and_grafana_publish_ports_on_loopback() -> None:
    published = [
        (service, port) for service, spec in services().items() for port in spec.get("ports", [])
    ]
    assert sorted(service for service, _ in published) == sorted([GATEWAY, GRAFANA]), (
        f"only {GATEWAY} and {GRAFANA} may publish a port, found {published}"
    )
    for service, port in published:
        host_ip, target = _published(port)
        assert host_ip == "127.0.0.1", f"{service}: port {port!r} must be bound to 127.0.0.1"
        if service == GATEWAY:
            gateway_port = environment(GATEWAY).get("LOUPE_GATEWAY_PORT")
            assert target == gateway_port, f"publishes {target}, gateway listens on {gateway_port}"
        else:
            assert target == "3000", f"{service} publishes {target}, Grafana listens on 3000"


def test_secrets_have_no_defaults() -> None:
    text = COMPOSE_FILE.read_text()
    for name in SECRETS:
        references = re.findall(r"\$\{" + name + r"([^}]*)\}|\$" + name + r"\b", text)
        assert references, f"{name} is never used in docker-compose.yml"
        lax = [ref for ref in references if not ref.startswith(":?")]
        assert not lax, f"{name} must always be required with ${{{name}:?...}}"


def test_required_variables_are_in_env_example() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE_FILE.read_text()))
    lines = ENV_EXAMPLE.read_text().splitlines()
    documented = set()
    for index, line in enumerate(lines):
        match = re.match(r"([A-Z][A-Z0-9_]*)=", line)
        if match:
            documented.add(match.group(1))
            previous = lines[index - 1] if index else ""
            assert previous.startswith("#"), (
                f"{match.group(1)} in compose.env.example has no comment line above it"
            )
    missing = sorted(required - documented)
    assert not missing, f"deploy/compose.env.example does not list {missing}"


def test_dockerfile_installs_without_extras() -> None:
    installs = [
        args for keyword, args in _dockerfile_instructions() if keyword == "RUN" and "pip" in args
    ]
    for args in installs:
        assert not re.search(r"\[[^\]]*\b(embedded|dev)\b", args), (
            f"deploy/Dockerfile installs the embedded/dev extras: {args}"
        )
    assert any(re.search(r"pip install\b.*\s\.(\s|$)", args) for args in installs), (
        "deploy/Dockerfile must `pip install .`"
    )


def test_dockerfile_runs_as_non_root() -> None:
    users = [args for keyword, args in _dockerfile_instructions() if keyword == "USER"]
    assert users, "deploy/Dockerfile has no USER: the services would run as root"
    user = users[-1].partition(":")[0]
    assert user not in ("root", "0"), f"deploy/Dockerfile runs as {users[-1]!r}"
