"""Static checks of deploy/k8s: the kustomizations render, every document is valid against the
Kubernetes schemas, and the manifests agree with the services' settings, the compose file, the
Caddyfile and the code. No cluster, kubectl, kustomize or network is needed."""

import base64
import re
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic_settings import BaseSettings

from loupe_inspect import worker
from loupe_inspect.settings import InspectSettings
from loupe_shared.contracts.streams import STREAMS
from loupe_shared.kit.health import health_router
from tests.deploy.compose import (
    HTTP_SERVICES,
    JOBS,
    SETTINGS,
    compose,
    env_file,
    required_fields,
)
from tests.deploy.compose import prefix as env_prefix

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
NATS_VALUES = K8S / "stateful" / "nats-values.yaml"
PRODUCTION = Path("overlays") / "production"
# The Kubernetes version whose schemas the manifests must satisfy (the oldest one supported).
KUBERNETES_VERSION = "1.33"

Doc = dict[str, Any]

GATEWAY = "gateway"
LOUPE_IMAGE = "loupe"
# Kinds of the operators' custom resources: not in the Kubernetes schemas, checked by hand.
CUSTOM_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("minio.min.io/v2", "Tenant"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
# Where each compose service lives on Kubernetes: (kind, name) in the rendered production
# overlay, or the Helm values file for NATS.
COMPOSE_COUNTERPARTS: dict[str, tuple[str, str]] = {
    "catalog": ("Deployment", "catalog"),
    "images": ("Deployment", "images"),
    "backup": ("Deployment", "backup"),
    "inspect": ("Deployment", "inspect"),
    "caddy": ("Deployment", GATEWAY),
    "migrate": ("Job", "migrate"),
    "setup": ("Job", "setup"),
    "postgres": ("Cluster", "loupe-pg"),
    "minio": ("Tenant", "loupe-minio"),
    "nats": ("values", "stateful/nats-values.yaml"),
}


# --- A small kustomize: just the fields these kustomizations use. -----------------------------
# Unlike kustomize it appends no content hash to generated ConfigMap/Secret names (kustomize
# does, and rewrites the references to them); everything else is the same.

KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "secretGenerator",
    "patches",
    "images",
    "replicas",
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def _load_documents(path: Path) -> list[Doc]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in documents), f"{path}: not a list of mappings"
    return documents


def _generated(kind: str, spec: Doc, directory: Path) -> Doc:
    data: dict[str, str] = {}
    for env in spec.get("envs", []):
        data |= env_file(directory / env)
    for entry in spec.get("files", []):
        key, _, source = str(entry).rpartition("=")
        data[key or Path(source).name] = (directory / source).read_text()
    for literal in spec.get("literals", []):
        key, _, value = str(literal).partition("=")
        data[key] = value
    doc: Doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if kind == "Secret":
        doc["type"] = spec.get("type", "Opaque")
        data = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    doc["data"] = data
    return doc


def _find(documents: list[Doc], kind: str, name: str) -> list[Doc]:
    return [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]


def _merge(target: Doc, patch: Doc, where: str) -> None:
    for key, value in patch.items():
        assert not isinstance(value, list), f"{where}: lists in patches are not supported here"
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, where)
        else:
            target[key] = value


def _pod_specs(doc: Doc) -> Iterator[Doc]:
    if doc["kind"] in POD_TEMPLATE_KINDS:
        yield doc["spec"]["template"]["spec"]


def render(directory: Path) -> list[Doc]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: this renderer does not support {sorted(unknown)}"
    documents: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        documents += render(path) if path.is_dir() else _load_documents(path)
    for field, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for spec in kustomization.get(field, []):
            doc = _generated(kind, spec, directory)
            existing = _find(documents, kind, spec["name"])
            behavior = spec.get("behavior", "create")
            if behavior == "create":
                assert not existing, f"{directory}: {kind} {spec['name']} is generated twice"
                documents.append(doc)
            else:
                assert behavior in ("replace", "merge"), f"{directory}: behavior {behavior}"
                assert existing, f"{directory}: {behavior} of a missing {kind} {spec['name']}"
                if behavior == "merge":
                    doc["data"] = existing[0]["data"] | doc["data"]
                documents[documents.index(existing[0])] = doc
    for entry in kustomization.get("patches", []):
        assert set(entry) == {"path"}, f"{directory}: only `path` patches are supported here"
        (patch,) = _load_documents(directory / entry["path"])
        targets = _find(documents, patch["kind"], patch["metadata"]["name"])
        assert len(targets) == 1, f"{directory}: {entry['path']} matches {len(targets)} documents"
        _merge(targets[0], patch, entry["path"])
    if namespace := kustomization.get("namespace"):
        for doc in documents:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = namespace
    for entry in kustomization.get("labels", []):
        assert not entry.get("includeSelectors"), f"{directory}: includeSelectors unsupported"
        for doc in documents:
            doc["metadata"].setdefault("labels", {}).update(entry["pairs"])
            if entry.get("includeTemplates") and doc["kind"] in POD_TEMPLATE_KINDS:
                template = doc["spec"]["template"].setdefault("metadata", {})
                template.setdefault("labels", {}).update(entry["pairs"])
    for entry in kustomization.get("images", []):
        for doc in documents:
            for pod in _pod_specs(doc):
                for container in pod.get("containers", []) + pod.get("initContainers", []):
                    name, _, tag = container["image"].partition(":")
                    if name == entry["name"]:
                        new_tag = entry.get("newTag", tag)
                        container["image"] = f"{entry.get('newName', name)}:{new_tag}"
    for entry in kustomization.get("replicas", []):
        targets = [d for d in documents if d["kind"] in ("Deployment", "StatefulSet")]
        targets = [d for d in targets if d["metadata"]["name"] == entry["name"]]
        assert targets, f"{directory}: replicas for a missing workload {entry['name']}"
        for doc in targets:
            doc["spec"]["replicas"] = entry["count"]
    ids = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in documents]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"{directory}: defined more than once: {sorted(duplicates)}"
    return documents


# --- The rendered trees. ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """The production overlay as an operator builds it: every *.env.example copied to the
    file the overlay reads (the real files are never in the repository)."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree)
    overlay = tree / PRODUCTION
    for example in overlay.glob("*.env.example"):
        real = overlay / example.name.removesuffix(".example")
        assert not (K8S / PRODUCTION / real.name).exists(), f"{real.name} must not be committed"
        shutil.copy(example, real)
    return render(overlay)


@cache
def _base() -> list[Doc]:
    return render(K8S / "base")


@cache
def _nats_values() -> Doc:
    loaded = yaml.safe_load(NATS_VALUES.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _one(documents: list[Doc], kind: str, name: str) -> Doc:
    found = _find(documents, kind, name)
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def _container(documents: list[Doc], workload: str) -> Doc:
    kind = "Job" if workload in JOBS else "Deployment"
    containers = _one(documents, kind, workload)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload} should run one container"
    container: Doc = containers[0]
    return container


def _config_maps(documents: list[Doc]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in documents if d["kind"] == "ConfigMap"}


def _environment(documents: list[Doc], workload: str) -> dict[str, str]:
    """Every variable the container gets: from ConfigMaps (envFrom) and `env`; variables
    from Secrets are given as `<secret:name/key>`."""
    container = _container(documents, workload)
    config_maps = _config_maps(documents)
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"{workload}: envFrom {source} (name each secret)"
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"{workload} reads the missing ConfigMap {name}"
        environment |= config_maps[name]
    for entry in container.get("env", []):
        assert entry["name"] not in environment, f"{workload} sets {entry['name']} twice"
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            environment[entry["name"]] = f"<secret:{ref['name']}/{ref['key']}>"
    return environment


def _port(documents: list[Doc], service: str) -> int:
    settings_class = HTTP_SERVICES[service]
    key = env_prefix(settings_class) + "PORT"
    value = _environment(documents, service).get(key)
    return int(value) if value else int(settings_class.model_fields["port"].default)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("http://").removeprefix("nats://").partition(":")
    return host, int(port)


def _secrets(documents: list[Doc]) -> dict[str, set[str]]:
    """Secret name -> keys: the generated ones and the one CloudNativePG makes per Cluster."""
    secrets = {d["metadata"]["name"]: set(d["data"]) for d in documents if d["kind"] == "Secret"}
    for cluster in (d for d in documents if d["kind"] == "Cluster"):
        secrets[f"{cluster['metadata']['name']}-app"] = {"username", "password", "host", "uri"}
    return secrets


def _walk(value: Any) -> Iterator[Doc]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


# --- The tests. ------------------------------------------------------------------------------


@pytest.mark.parametrize("tree", ["base", "stateful"])
def test_kustomizations_render(tree: str) -> None:
    documents = render(K8S / tree)
    assert documents, f"{tree} renders nothing"
    assert {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"} == {
        "loupe"
    }


def test_documents_match_the_kubernetes_schemas(production: list[Doc]) -> None:
    errors = []
    for doc in production + _base():
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(part) for part in error.path)
            errors.append(f"{doc['kind']} {doc['metadata']['name']}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(error.message)
    assert not errors, "\n".join(errors)


def test_custom_resources_have_their_required_fields(production: list[Doc]) -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in production}
    assert kinds >= CUSTOM_KINDS, f"missing custom resources {sorted(CUSTOM_KINDS - kinds)}"

    cluster = _one(production, "Cluster", "loupe-pg")["spec"]
    assert cluster["instances"] >= 3, "PostgreSQL HA needs 3 instances"
    assert cluster["storage"]["size"], "the Cluster needs a storage size"
    initdb = cluster["bootstrap"]["initdb"]
    catalog = _environment(production, "catalog")
    assert (initdb["database"], initdb["owner"]) == (
        catalog["CATALOG_DB_NAME"],
        catalog["CATALOG_DB_USER"],
    ), "the Cluster's database and owner are not the ones the services use"
    compose_major = compose()["services"]["postgres"]["image"].partition(":")[2].split(".")[0]
    assert cluster["imageName"].endswith(f":{compose_major}"), "PostgreSQL major differs"
    connections = int(cluster["postgresql"]["parameters"]["max_connections"])
    assert connections >= 300, "max_connections below the compose setting"

    tenant = _one(production, "Tenant", "loupe-minio")["spec"]
    assert tenant["pools"], "the Tenant has no pool"
    drives = 0
    for pool in tenant["pools"]:
        missing = {"name", "servers", "volumesPerServer", "volumeClaimTemplate"} - set(pool)
        assert not missing, f"Tenant pool misses {sorted(missing)}"
        drives += pool["servers"] * pool["volumesPerServer"]
    assert drives >= 4, "MinIO erasure coding needs at least 4 drives"
    assert tenant["image"] == compose()["services"]["minio"]["image"], "MinIO release differs"
    secrets = _secrets(production)
    assert "config.env" in secrets.get(tenant["configuration"]["name"], set())
    for user in tenant["users"]:
        assert secrets.get(user["name"], set()) >= {"CONSOLE_ACCESS_KEY", "CONSOLE_SECRET_KEY"}

    scaled = _one(production, "ScaledObject", "inspect")["spec"]
    _one(production, "Deployment", scaled["scaleTargetRef"]["name"])
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    for trigger in scaled["triggers"]:
        required = {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"}
        assert trigger["type"] == "nats-jetstream"
        missing = required - set(trigger["metadata"])
        assert not missing, f"the nats-jetstream trigger misses {sorted(missing)}"


def test_every_compose_service_has_a_kubernetes_counterpart(production: list[Doc]) -> None:
    services = {
        name: spec
        for name, spec in compose()["services"].items()
        if not spec.get("profiles")  # the monitoring profile is deployed on its own
    }
    unmapped = sorted(set(services) - set(COMPOSE_COUNTERPARTS))
    assert not unmapped, f"compose services with no Kubernetes counterpart here: {unmapped}"
    for service, (kind, name) in COMPOSE_COUNTERPARTS.items():
        assert service in services, f"{service} is no longer in compose: update this mapping"
        if kind == "values":
            assert (K8S / name).is_file(), f"{name} is missing"
        else:
            _one(production, kind, name)


@pytest.mark.parametrize("workload", list(SETTINGS))
def test_commands_and_images_match_compose(production: list[Doc], workload: str) -> None:
    container = _container(production, workload)
    assert container["command"] == compose()["services"][workload]["command"]
    base_image = _container(_base(), workload)["image"]
    assert base_image.partition(":")[0] == LOUPE_IMAGE, f"{workload} runs {base_image}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version, "pyproject.toml has no version"
    assert base_image == f"{LOUPE_IMAGE}:{version.group(1)}", "the image tag is not the version"
    images = {_container(production, name)["image"] for name in SETTINGS}
    assert len(images) == 1, f"one image for every service and job: {images}"


@pytest.mark.parametrize(("workload", "settings_class"), list(SETTINGS.items()))
def test_environment_is_the_settings_class(
    production: list[Doc], workload: str, settings_class: type[BaseSettings]
) -> None:
    prefix = env_prefix(settings_class)
    environment = _environment(production, workload)
    unknown = [
        key
        for key in environment
        if not key.startswith(prefix)
        or key[len(prefix) :].lower() not in settings_class.model_fields
    ]
    assert not unknown, f"{workload} sets variables its settings do not read: {unknown}"
    missing = [
        prefix + field.upper()
        for field in required_fields(settings_class)
        if prefix + field.upper() not in environment
    ]
    assert not missing, f"{workload} does not set {missing}"
    for key, value in environment.items():
        if key.endswith(("_PASSWORD", "_SECRET_KEY", "_ACCESS_KEY", "_TOKEN")):
            assert value.startswith("<secret:"), f"{workload}: {key} must come from a Secret"
    if workload in HTTP_SERVICES:
        assert environment[prefix + "HOST"] == "0.0.0.0", f"{workload} must listen on all"


def test_secret_references_resolve(production: list[Doc]) -> None:
    secrets = _secrets(production)
    references = [
        (node["secretKeyRef"]["name"], node["secretKeyRef"]["key"])
        for node in _walk([*production, _nats_values()])
        if isinstance(node.get("secretKeyRef"), dict)
    ]
    assert len(references) >= 10, "expected the services' secrets to be referenced"
    for name, key in references:
        assert name in secrets, f"Secret {name} is neither generated nor made by an operator"
        assert key in secrets[name], f"Secret {name} has no key {key}"
    assert not [d for d in _base() if d["kind"] == "Secret"], "the base must define no Secret"


def test_secret_examples_hold_placeholders_only() -> None:
    overlay = K8S / PRODUCTION
    examples = sorted(overlay.glob("*.env.example"))
    assert len(examples) == 3, f"expected three example secret files, found {examples}"
    ignored = set((overlay / ".gitignore").read_text().split())
    for example in examples:
        assert example.name.removesuffix(".example") in ignored, f"{example.name}: not ignored"
        lines = [line for line in example.read_text().splitlines() if line.strip()]
        secret_lines = [
            line
            for line in lines
            if not line.startswith("#")
            and re.search(r"(USER|PASSWORD|KEY|TOKEN)$", line.removeprefix("export ").split("=")[0])
        ]
        assert secret_lines, f"{example.name} holds no credential"
        for line in secret_lines:
            assert re.search(r"change-?me", line, re.IGNORECASE), (
                f"{example.name}: {line.split('=')[0]} has no placeholder value"
            )


@pytest.mark.parametrize("service", list(HTTP_SERVICES))
def test_ports_and_probes_match_the_service(production: list[Doc], service: str) -> None:
    port = _port(production, service)
    container = _container(production, service)
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["ports"][0]["name"] == "http"
    kube_service = _one(production, "Service", service)["spec"]
    assert [(p["port"], p["targetPort"]) for p in kube_service["ports"]] == [(port, "http")]
    paths = {route.path for route in health_router({}).routes}  # type: ignore[attr-defined]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http", f"{service}: {probe} port"


def test_service_addresses_point_at_services(production: list[Doc]) -> None:
    for workload, settings_class in SETTINGS.items():
        environment = _environment(production, workload)
        prefix = env_prefix(settings_class)
        for key, value in environment.items():
            if key.endswith("_URL") and key != prefix + "NATS_URL":
                host, port = _host_port(value)
                assert host in HTTP_SERVICES, f"{workload}: {key}={value} names no service"
                assert port == _port(production, host), f"{workload}: {key}={value}, wrong port"
        assert _host_port(environment[prefix + "NATS_URL"]) == ("nats", 4222)
        if prefix + "DB_HOST" in environment:
            assert environment[prefix + "DB_HOST"] == "loupe-pg-rw", "the Cluster's rw Service"
        if prefix + "S3_ENDPOINT" in environment:
            tenant = _one(production, "Tenant", "loupe-minio")["spec"]
            assert tenant["requestAutoCert"] is False, "the services expect plain HTTP"
            secure = environment[prefix + "S3_SECURE"]
            assert secure.lower() == "false", f"{workload}: the Tenant serves plain HTTP"
            assert environment[prefix + "S3_ENDPOINT"] == "minio:80", "the Tenant's Service"


def test_keda_scales_on_the_inspection_consumer(production: list[Doc]) -> None:
    (trigger,) = _one(production, "ScaledObject", "inspect")["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert metadata["stream"] == worker.STREAM
    assert any(spec.name == worker.STREAM and spec.work_queue for spec in STREAMS)
    environment = _environment(production, "inspect")
    durable = environment.get("INSPECT_DURABLE", InspectSettings.model_fields["durable"].default)
    assert metadata["consumer"] == durable, "KEDA watches another consumer than the workers use"
    host, port = _host_port(metadata["natsServerMonitoringEndpoint"])
    nats_host = _host_port(environment["INSPECT_NATS_URL"])[0]
    assert host == f"{nats_host}-headless.loupe.svc.cluster.local", "not the NATS headless Service"
    assert port == _nats_values()["config"]["monitor"].get("port", 8222)
    assert "accounts" not in _nats_values()["config"]["merge"], "users in the global account"
    assert metadata["account"] == "$G"


def test_nats_values_cluster_with_synced_jetstream(production: list[Doc]) -> None:
    config = _nats_values()["config"]
    assert config["cluster"]["enabled"]
    assert config["cluster"]["replicas"] == 3
    jetstream = config["jetstream"]
    assert jetstream["enabled"]
    assert jetstream["fileStore"]["enabled"]
    assert jetstream["fileStore"]["pvc"]["enabled"], "JetStream must be on a volume"
    assert jetstream["merge"]["sync_interval"] == "always"
    assert config["monitor"]["enabled"], "KEDA reads the monitoring port"
    authorization = config["merge"]["authorization"]
    for workload, settings_class in SETTINGS.items():
        user = _environment(production, workload)[env_prefix(settings_class) + "NATS_USER"]
        assert user == authorization["user"], f"{workload} signs in as another NATS user"
    variable = re.fullmatch(r"<< \$(\w+) >>", authorization["password"])
    assert variable, "the NATS password must come from the environment"
    assert variable.group(1) in _nats_values()["container"]["env"]
    replicas = _environment(production, "setup")["LOUPE_STREAM_REPLICAS"]
    assert int(replicas) == config["cluster"]["replicas"], "streams must have a copy per node"


def test_pods_are_locked_down(production: list[Doc]) -> None:
    pods = [(d["metadata"]["name"], spec) for d in production for spec in _pod_specs(d)]
    assert len(pods) == len(SETTINGS) + 1, f"unexpected workloads {[name for name, _ in pods]}"
    for name, pod in pods:
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] != 0, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert set(resources[bound]) >= {"cpu", "memory"}, f"{name}: {bound}"
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be an emptyDir"


def test_selectors_and_scale_targets_match(production: list[Doc]) -> None:
    deployments = {d["metadata"]["name"]: d for d in production if d["kind"] == "Deployment"}
    for deployment in deployments.values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), deployment["metadata"]["name"]
    for doc in production:
        if doc["kind"] in ("Service", "PodDisruptionBudget"):
            selector = doc["spec"]["selector"]
            if doc["kind"] == "PodDisruptionBudget":
                selector = selector["matchLabels"]
            matched = [
                name
                for name, d in deployments.items()
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert matched, f"{doc['kind']} {doc['metadata']['name']} selects no pods"
    autoscaled = [
        d["spec"]["scaleTargetRef"]["name"]
        for d in production
        if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    ]
    for name in autoscaled:
        assert "replicas" not in deployments[name]["spec"], f"{name}: replicas fight the scaler"
    assert sorted(autoscaled) == sorted(set(autoscaled)), "a workload with two autoscalers"


def test_production_runs_every_http_service_twice(production: list[Doc]) -> None:
    minimum = {
        d["metadata"]["name"]: d["spec"]["replicas"]
        for d in production
        if d["kind"] == "Deployment" and "replicas" in d["spec"]
    }
    for doc in production:
        if doc["kind"] == "HorizontalPodAutoscaler":
            minimum[doc["spec"]["scaleTargetRef"]["name"]] = doc["spec"]["minReplicas"]
        if doc["kind"] == "ScaledObject":
            minimum[doc["spec"]["scaleTargetRef"]["name"]] = doc["spec"]["minReplicaCount"]
    for name in [*HTTP_SERVICES, GATEWAY]:
        assert minimum.get(name, 1) >= 2, f"{name} runs {minimum.get(name, 1)} replica(s)"
    image = _container(production, "catalog")["image"]
    assert not image.startswith(f"{LOUPE_IMAGE}:"), "production must name a registry image"


def test_gateway_serves_the_repository_caddyfile(production: list[Doc]) -> None:
    copy = K8S / "base" / "gateway" / "Caddyfile"
    assert copy.read_text() == CADDYFILE.read_text(), (
        "deploy/k8s/base/gateway/Caddyfile differs from deploy/Caddyfile: copy it again"
    )
    container = _container(production, GATEWAY)
    assert container["image"] == compose()["services"]["caddy"]["image"]
    pod = _one(production, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    config_maps = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    caddyfile_map = _config_maps(production)[config_maps[mounts["/etc/caddy"]]]
    assert caddyfile_map["Caddyfile"] == CADDYFILE.read_text()
    assert "--config /etc/caddy/Caddyfile" in " ".join(container["command"])

    environment = _environment(production, GATEWAY)
    caddyfile = CADDYFILE.read_text()
    unread = [key for key in environment if "{$" + key not in caddyfile]
    assert not unread, f"the Caddyfile never reads {unread}"
    assert environment["LOUPE_GATEWAY_BIND"] == "0.0.0.0"
    port = int(environment["LOUPE_GATEWAY_PORT"])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert "handle /healthz" in caddyfile
    routed = set()
    for key, value in environment.items():
        if re.fullmatch(r"LOUPE_\w+_UPSTREAM", key):
            host, upstream_port = _host_port(value)
            assert host in HTTP_SERVICES, f"{key}={value} names no Loupe service"
            assert upstream_port == _port(production, host), f"{key}={value}: wrong port"
            routed.add(host)
    assert routed == set(HTTP_SERVICES), f"the gateway routes to {sorted(routed)} only"


def test_network_policies_admit_the_gateway(production: list[Doc]) -> None:
    policies = {
        d["metadata"]["name"]: d["spec"] for d in production if d["kind"] == "NetworkPolicy"
    }
    selected = policies["loupe-services"]["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(selected) == sorted(HTTP_SERVICES), "every service behind the policy"
    gateway_rule = policies["loupe-gateway"]["ingress"][0]
    assert "from" not in gateway_rule, "the gateway must be reachable from outside"


def test_readme_describes_every_file() -> None:
    readme = (K8S / "README.md").read_text()
    files = [
        path.relative_to(K8S).as_posix()
        for path in K8S.rglob("*")
        if path.is_file() and path.name != "README.md"
    ]
    undocumented = [name for name in files if name not in readme and Path(name).name not in readme]
    assert not undocumented, f"deploy/k8s/README.md does not mention {undocumented}"
