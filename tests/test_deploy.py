"""deploy/: Compose and Kubernetes files that run many segcast nodes against one shared Triton server.

No Docker engine or Kubernetes cluster runs here, so these tests check what can be checked without
one: every Kubernetes manifest against the API's JSON schemas that kubernetes-validate bundles
(strict, so a misspelt key fails), compose.yaml against the Compose Specification schema that
check-jsonschema bundles, every node's config file with segcast's own loader, the promises the files
make to each other (names, ports, volumes, labels), and each entrance's nginx config for real: a real
nginx routes HTTP and WebSockets to stand-in nodes on 127.0.0.1, and serves All cameras' page from a
node that answers while another is down, and whole from one version while the nodes run two.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import crossplane
import kubernetes_validate
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.config import Settings, load_config
from server.deploy.entrance import TEMPORARY_FILES
from server.deploy.split import split_config
from server.deploy.split_writing import write_split
from server.inference.models import BUNDLED_MODEL
from tests.support.nginx import NGINX, nginx_serving
from tests.support.polling import eventually
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_NGINX = DEPLOY / "compose" / "nginx.conf"
K8S = DEPLOY / "k8s"
K8S_NGINX = K8S / "entrance" / "nginx.conf"
SPLIT = "split"  # an entrance parameter: the nginx.conf `segcast split` writes (see `entrance_conf`)
#: The entrances tested alike: Compose's, Kubernetes', and the one `segcast split` writes (made per test).
ENTRANCE_CONFS: list[Path | str] = [COMPOSE_NGINX, K8S_NGINX, SPLIT]
ENTRANCE_IDS = ["compose", "k8s", "split"]

#: The model `segcast export --format triton` writes by default; every node must ask Triton for it.
MODEL = "segcast-scene-seg"
#: The oldest Kubernetes the manifests claim to work on (deploy/README.md), and the newest schemas bundled.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"  # set on each pod by the StatefulSet controller
WS_REPLY_S = 10.0
#: What a stand-in node streams to a viewer that reads nothing: far more than the sockets between it
#: and the viewer hold, far less than the 1 GiB nginx would spool to disk with proxy_buffering on.
STREAM_CHUNK_BYTES = 256 * 1024
STREAM_TOTAL_BYTES = 256 * 1024 * 1024
STREAM_STALL_S = 1.0  # no progress for this long: the node is held back
STREAM_LIMIT_S = 60.0


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object of every manifest kustomization.yaml lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        found += [(name, doc) for doc in yaml.safe_load_all((K8S / name).read_text()) if doc is not None]
    return found


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for _, doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r} in deploy/k8s, found {len(matches)}"
    return matches[0]


def container(pod_spec: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    containers = pod_spec["initContainers" if init else "containers"]
    matches = [c for c in containers if c["name"] == name]
    assert len(matches) == 1, f"expected one container {name!r}"
    return matches[0]


def port_number(container_spec: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in container_spec["ports"] if p["name"] == name)


def mount_path(container_spec: dict[str, Any], volume: str) -> str:
    return next(m["mountPath"] for m in container_spec.get("volumeMounts", []) if m["name"] == volume)


def volume_mounted_at(container_spec: dict[str, Any], path: str) -> str:
    return next(m["name"] for m in container_spec.get("volumeMounts", []) if m["mountPath"] == path)


def flag_value(args: list[str], flag: str) -> str:
    """The value of ``--flag VALUE`` or ``--flag=VALUE`` in an argument list."""
    for index, arg in enumerate(args):
        if arg == flag:
            return args[index + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {args}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_nodes() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose()["services"].items() if name.startswith("node-")}


def compose_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path or volume name, for ``SOURCE:TARGET[:ro]`` volume entries."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


def compose_node_config(service: dict[str, Any]) -> Path:
    """The host file a Compose node is started with (``--config`` resolved through its mounts)."""
    in_container = flag_value(service["command"], "--config")
    source = compose_mounts(service)[in_container]
    return (COMPOSE.parent / source).resolve()


def nginx_routes(conf: Path) -> dict[str, str]:
    """Path prefix -> ``host:port`` of every ``location`` of the server that proxies to one node (not
    to a group); the locations nested in a node's (its streams) are the node's, not routes of their own.

    Two shapes are understood: ``proxy_pass http://host:port/;`` (the prefix is cut by nginx), and
    ``set $var host:port; rewrite ...; proxy_pass http://$var;`` (a name looked up per request).
    """
    groups = nginx_upstreams(conf)
    routes = {}
    for location in _server_locations(conf):
        block = location["block"]
        passes = [d["args"][0] for d in block if d["directive"] == "proxy_pass"]
        if not passes or _proxied_host(passes[0]) in groups:
            continue
        target = _proxied_host(passes[0])
        if target.startswith("$"):
            sets = {d["args"][0]: d["args"][1] for d in block if d["directive"] == "set"}
            target = sets[target]
        routes[location["args"][-1]] = target
    return routes


def nginx_upstreams(conf: Path) -> dict[str, list[str]]:
    """Name -> the ``host:port`` of each server, for every ``upstream`` group."""
    return {
        upstream["args"][0]: [d["args"][0] for d in upstream["block"] if d["directive"] == "server"]
        for upstream in _directives(_parse_nginx(conf), "upstream")
    }


def _proxied_host(proxy_pass: str) -> str:
    """``host:port`` (or a group's name, or ``$var``) of a ``proxy_pass`` URL."""
    return proxy_pass.removeprefix("http://").split("/")[0]


def nginx_effective(conf: Path, prefix: str, directive: str, nested: str | None = None) -> list[list[str]]:
    """The arguments of ``directive`` in force in ``location prefix`` (or in the location ``nested``
    in it), after nginx's inheritance: a level that sets none of a directive inherits all of them
    from the level above."""
    parsed = _parse_nginx(conf)
    http = next(d for d in parsed if d["directive"] == "http")
    server = next(d for d in http["block"] if d["directive"] == "server")
    location = next(d for d in server["block"] if d["directive"] == "location" and d["args"][-1] == prefix)
    levels = [location, server, http]
    if nested is not None:
        levels.insert(0, next(d for d in location["block"] if d["directive"] == "location" and d["args"][-1] == nested))
    for level in levels:
        found = [d["args"] for d in level["block"] if d["directive"] == directive]
        if found:
            return found
    return []


def nested_locations(conf: Path, prefix: str) -> list[str]:
    """The path (or regular expression) of each location nested in ``location prefix``."""
    location = next(d for d in _server_locations(conf) if d["args"][-1] == prefix)
    return [d["args"][-1] for d in location["block"] if d["directive"] == "location"]


def _server_locations(conf: Path) -> list[dict[str, Any]]:
    """The locations of the entrance's server, in order, not those nested in them."""
    http = next(d for d in _parse_nginx(conf) if d["directive"] == "http")
    server = next(d for d in http["block"] if d["directive"] == "server")
    return [d for d in server["block"] if d["directive"] == "location"]


def _parse_nginx(conf: Path) -> list[dict[str, Any]]:
    payload = crossplane.parse(str(conf), single=True, comments=False)
    assert payload["status"] == "ok", payload["errors"]
    return payload["config"][0]["parsed"]


def _directives(tree: list[dict[str, Any]], name: str) -> Iterator[dict[str, Any]]:
    for directive in tree:
        if directive["directive"] == name:
            yield directive
        yield from _directives(directive.get("block", []), name)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_kubernetes_manifest_matches_the_api_schema(version: str) -> None:
    documents = k8s_documents()
    assert documents
    for file_name, document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            raise AssertionError(f"{file_name}: {document['kind']} {where}: {exc.message}") from None


def test_kustomization_lists_every_manifest_and_node_config() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    generated = {g["name"]: g["files"] for g in kustomization["configMapGenerator"]}
    for files in generated.values():
        for entry in files:
            assert (K8S / entry.split("=")[-1]).is_file(), f"kustomization.yaml names a missing file: {entry}"
    node_files = {f"nodes/{p.name}" for p in (K8S / "nodes").glob("*.toml")}
    assert set(generated["segcast-nodes"]) == node_files
    assert generated["entrance"] == ["entrance/nginx.conf"]


def test_every_object_is_labelled_and_every_selector_finds_its_pods() -> None:
    documents = [doc for _, doc in k8s_documents()]
    pod_labels: list[dict[str, str]] = []
    for doc in documents:
        labels = doc["metadata"]["labels"]
        assert labels[NAME_LABEL] == "segcast", doc["metadata"]["name"]
        assert labels[COMPONENT_LABEL], doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "StatefulSet"):
            template = doc["spec"]["template"]["metadata"]["labels"]
            assert template.items() >= doc["spec"]["selector"]["matchLabels"].items(), doc["metadata"]["name"]
            assert template[COMPONENT_LABEL] == labels[COMPONENT_LABEL]
            replicas = doc["spec"]["replicas"]
            if doc["kind"] == "StatefulSet":
                name = doc["metadata"]["name"]
                pod_labels += [{**template, POD_NAME_LABEL: f"{name}-{i}"} for i in range(replicas)]
            else:
                pod_labels.append(template)
    selectors = [doc["spec"]["selector"] for doc in documents if doc["kind"] == "Service"]
    selectors += [doc["spec"]["podSelector"]["matchLabels"] for doc in documents if doc["kind"] == "NetworkPolicy"]
    for selector in selectors:
        assert any(pod.items() >= selector.items() for pod in pod_labels), f"selects no pod: {selector}"


def test_every_generated_config_map_is_labelled() -> None:
    for generator in yaml.safe_load((K8S / "kustomization.yaml").read_text())["configMapGenerator"]:
        labels = generator.get("options", {}).get("labels", {})
        assert labels.get(NAME_LABEL) == "segcast", generator["name"]
        assert labels.get(COMPONENT_LABEL), generator["name"]


def test_triton_gets_a_gpu_health_probes_and_the_exported_model_repository() -> None:
    deployment = k8s_object("Deployment", "triton")
    pod = deployment["spec"]["template"]["spec"]
    triton = container(pod, "triton")
    export = container(pod, "export", init=True)

    assert int(triton["resources"]["limits"]["nvidia.com/gpu"]) == 1
    for probe in ("startupProbe", "readinessProbe"):
        assert triton[probe]["httpGet"]["path"] == "/v2/health/ready"
        assert triton[probe]["httpGet"]["port"] == "http"
    assert triton["livenessProbe"]["httpGet"]["path"] in ("/v2/health/live", "/v2/health/ready")
    assert port_number(triton, "http") == 8000

    assert export["args"][:3] == ["export", "--format", "triton"]
    written = flag_value(export["args"], "--out")
    served = flag_value(triton["args"], "--model-repository")
    volume = volume_mounted_at(export, written)
    assert mount_path(triton, volume) == served, "Triton must serve the folder the export wrote"
    assert next(v for v in pod["volumes"] if v["name"] == volume)["emptyDir"] is not None

    service = k8s_object("Service", "triton")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    for name, number in (("http", 8000), ("grpc", 8001), ("metrics", 8002)):
        assert by_name[name]["port"] == number
        assert port_number(triton, by_name[name]["targetPort"]) == number


def test_each_node_pod_loads_its_own_config_that_points_at_triton() -> None:
    statefulset = k8s_object("StatefulSet", "segcast")
    pod = statefulset["spec"]["template"]["spec"]
    node = container(pod, "segcast")
    replicas = statefulset["spec"]["replicas"]
    assert replicas >= 2

    env = {e["name"]: e for e in node["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    config_dir = mount_path(node, "config")
    script = node["command"][-1]
    assert f'config="{config_dir}/$POD_NAME.toml"' in script
    assert 'exec segcast serve --config "$config"' in script
    config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == "segcast-nodes"

    triton_grpc = next(p["port"] for p in k8s_object("Service", "triton")["spec"]["ports"] if p["name"] == "grpc")
    http_port = port_number(node, "http")
    for ordinal in range(replicas):
        settings = load_config(K8S / "nodes" / f"segcast-{ordinal}.toml")
        assert settings.model == f"grpc://triton:{triton_grpc}/{MODEL}"
        assert (settings.host, settings.port) == ("0.0.0.0", http_port)
        assert settings.streams, f"segcast-{ordinal}.toml has no cameras"
        assert not settings.admin_tokens and not settings.viewer_tokens, "tokens belong in the Secret"

        service = k8s_object("Service", f"segcast-{ordinal}")
        assert service["spec"]["selector"][POD_NAME_LABEL] == f"segcast-{ordinal}"
        assert service["spec"]["ports"][0]["targetPort"] == "http"

    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert node[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_node_tokens_come_from_a_secret() -> None:
    node = container(k8s_object("StatefulSet", "segcast")["spec"]["template"]["spec"], "segcast")
    env = {e["name"]: e for e in node["env"]}
    admin = env["SEGCAST_ADMIN_TOKENS"]["valueFrom"]["secretKeyRef"]
    assert admin == {"name": "segcast-tokens", "key": "admin-tokens"}, "a node on 0.0.0.0 refuses to start without"
    assert env["SEGCAST_VIEWER_TOKENS"]["valueFrom"]["secretKeyRef"]["name"] == "segcast-tokens"
    assert not [doc for _, doc in k8s_documents() if doc["kind"] == "Secret"], "no secret is committed"


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod template spec) of every Deployment and StatefulSet in deploy/k8s."""
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for _, doc in k8s_documents()
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]


def image_user() -> tuple[int, int]:
    """The uid and gid segcast's image runs as (the Dockerfile's ``USER uid:gid``)."""
    [(uid, gid)] = re.findall(r"^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    return int(uid), int(gid)


def test_no_pod_gets_an_api_token_a_way_to_gain_privileges_or_every_system_call() -> None:
    for name, pod in pod_specs():
        assert pod.get("automountServiceAccountToken") is False, f"{name}: nothing here calls the Kubernetes API"
        assert pod.get("securityContext", {}).get("seccompProfile") == {"type": "RuntimeDefault"}, name
        for each in pod.get("initContainers", []) + pod["containers"]:
            assert each.get("securityContext", {}).get("allowPrivilegeEscalation") is False, (name, each["name"])


def test_segcast_runs_as_the_images_user_who_is_given_its_volumes() -> None:
    """A fresh PersistentVolumeClaim's root folder is root's (0755): without fsGroup a node, running as
    the image's user, could not create its event history there and lost every event."""
    uid, gid = image_user()
    pod = k8s_object("StatefulSet", "segcast")["spec"]["template"]["spec"]
    assert pod.get("securityContext") == {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for name, spec in pod_specs():
        for each in spec.get("initContainers", []) + spec["containers"]:
            if each["image"] != "segcast":
                continue
            own = each.get("securityContext", {})
            user = {**spec.get("securityContext", {}), **own}  # the container's own wins
            as_user = (user.get("runAsNonRoot"), user.get("runAsUser"), user.get("runAsGroup"))
            assert as_user == (True, uid, gid), (name, each["name"])
            assert own.get("capabilities") == {"drop": ["ALL"]}, (name, each["name"])


def test_the_entrance_keeps_only_the_privileges_nginx_starts_with() -> None:
    """The nginx image starts as root: to listen on port 80, and to give its workers (and their
    temporary folders) to the user nginx. It fails to start without any one of these."""
    pod = k8s_object("Deployment", "entrance")["spec"]["template"]["spec"]
    nginx = container(pod, "nginx")
    assert port_number(nginx, "http") == 80
    capabilities = nginx.get("securityContext", {}).get("capabilities", {})
    assert capabilities.get("drop") == ["ALL"]
    assert sorted(capabilities.get("add", [])) == ["CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"]


def test_the_k8s_entrance_routes_a_path_to_each_node_pod_service() -> None:
    replicas = k8s_object("StatefulSet", "segcast")["spec"]["replicas"]
    expected = {}
    for ordinal in range(replicas):
        service = k8s_object("Service", f"segcast-{ordinal}")
        expected[f"/segcast-{ordinal}/"] = f"segcast-{ordinal}:{service['spec']['ports'][0]['port']}"
    assert nginx_routes(K8S_NGINX) == expected


def _kubectl_builds_kustomizations() -> bool:
    """Whether a kubectl of 1.21 or later is on the PATH: older ones' kustomize cannot read the generators' options."""
    if shutil.which("kubectl") is None:
        return False
    try:
        shown = subprocess.run(
            ["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30, check=True
        )
        version = json.loads(shown.stdout)["clientVersion"]
        return (int(version["major"]), int(version["minor"].rstrip("+"))) >= (1, 21)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return False


# Not a required component (tests/support/components.py): no index CI reaches has a kubectl that builds
# it (Debian 12's 1.20 cannot read the generators' options), so CI skips it (deploy/README.md says so).
@pytest.mark.skipif(not _kubectl_builds_kustomizations(), reason="needs kubectl 1.21+ (kustomize) to build deploy/k8s")
def test_the_kustomize_build_is_valid_labelled_and_gives_each_node_its_config() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True)
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc is not None]
    for document in objects:
        kubernetes_validate.validate(document, K8S_VERSIONS[-1], strict=True)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "segcast"
        labels = document["metadata"].get("labels", {})
        assert labels.get(NAME_LABEL) == "segcast" and labels.get(COMPONENT_LABEL), document["metadata"]["name"]
    statefulset = next(d for d in objects if d["kind"] == "StatefulSet")
    config_map = next(v for v in statefulset["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    nodes = next(
        d for d in objects if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map["configMap"]["name"]
    )
    assert set(nodes["data"]) == {f"segcast-{i}.toml" for i in range(statefulset["spec"]["replicas"])}


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_triton_reserves_a_gpu_and_serves_what_the_export_wrote() -> None:
    services = compose()["services"]
    triton, export = services["triton"], services["export"]

    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert triton["depends_on"]["export"]["condition"] == "service_completed_successfully"
    assert "http://127.0.0.1:8000/v2/health/ready" in triton["healthcheck"]["test"]

    assert export["command"][:3] == ["export", "--format", "triton"]
    written = flag_value(export["command"], "--out")
    served = flag_value(triton["command"], "--model-repository")
    volume = compose_mounts(export)[written]
    assert compose_mounts(triton)[served] == volume, "Triton must serve the volume the export wrote"
    assert volume in compose()["volumes"]


def test_compose_nodes_load_their_own_config_that_points_at_triton() -> None:
    nodes = compose_nodes()
    assert len(nodes) >= 2
    configs = set()
    for name, service in nodes.items():
        path = compose_node_config(service)
        configs.add(path)
        settings = load_config(path)
        model = flag_value(service["command"], "--model") if "--model" in service["command"] else settings.model
        assert model == f"grpc://triton:8001/{MODEL}", name
        assert settings.host == "0.0.0.0", name
        assert f"127.0.0.1:{settings.port}/healthz" in " ".join(service["healthcheck"]["test"]), name
        assert any(s.uri.startswith("scene:") for s in settings.streams), (
            f"{name} needs a scene to work without cameras"
        )
        assert not settings.admin_tokens and not settings.viewer_tokens, f"{name}: tokens belong in deploy/.env"
        assert "triton" in service["depends_on"], name
        assert service["environment"]["SEGCAST_ADMIN_TOKENS"].startswith("${SEGCAST_ADMIN_TOKENS:?"), name
    assert len(configs) == len(nodes), "every node reads its own cameras"


def test_every_node_admits_as_many_viewers_from_the_entrance_as_in_all() -> None:
    # Behind the entrance every viewer of a node comes from the entrance's one address, so a
    # per-address limit below the total would cap the whole node at that many viewers.
    configs = sorted((K8S / "nodes").glob("*.toml")) + [compose_node_config(s) for s in compose_nodes().values()]
    assert len(configs) >= 4
    for path in configs:
        limits = load_config(path).viewer_limits
        assert limits.max_viewers_per_address >= limits.max_viewers, path.name


def env_file_commands() -> list[tuple[str, str]]:
    """(where, command) for each shell command deploy/README.md and compose.yaml's header give that
    writes deploy/.env."""
    readme = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    found = [("deploy/README.md", line) for block in blocks for line in block.splitlines() if "> .env" in line]
    header = [line.removeprefix("#").strip() for line in COMPOSE.read_text().splitlines() if line.startswith("#")]
    found += [("deploy/compose.yaml", line) for line in header if "> .env" in line]
    return found


def test_the_documented_env_file_keeps_the_admin_token_to_its_owner(tmp_path: Path) -> None:
    """Written under the usual umask (022), .env was anyone's to read, with the admin token in it."""
    commands = env_file_commands()
    assert {where for where, _ in commands} == {"deploy/README.md", "deploy/compose.yaml"}
    for index, (where, command) in enumerate(commands):
        folder = tmp_path / str(index)
        folder.mkdir()
        subprocess.run(["sh", "-c", f"umask 022; {command}"], cwd=folder, check=True, timeout=60)
        env = folder / ".env"
        assert re.fullmatch(r"SEGCAST_ADMIN_TOKENS=[\w-]{16,}\n", env.read_text()), where
        assert env.stat().st_mode & 0o077 == 0, f"{where}: {command}"


def test_compose_publishes_only_the_entrance() -> None:
    published = {name for name, service in compose()["services"].items() if service.get("ports")}
    assert published == {"entrance"}, "Triton has no access control; nodes are reached through the entrance"
    entrance = compose()["services"]["entrance"]
    assert (COMPOSE.parent / compose_mounts(entrance)["/etc/nginx/nginx.conf"]).resolve() == COMPOSE_NGINX


def test_the_compose_entrance_routes_a_path_to_each_node() -> None:
    expected = {}
    for name, service in compose_nodes().items():
        expected[f"/{name}/"] = f"{name}:{load_config(compose_node_config(service)).port}"
    assert nginx_routes(COMPOSE_NGINX) == expected


@pytest.mark.parametrize("conf", ENTRANCE_CONFS, ids=ENTRANCE_IDS)
def test_entrance_passes_websocket_upgrades_and_does_not_buffer(conf: Path | str, tmp_path: Path) -> None:
    conf = entrance_conf(conf, tmp_path)
    for prefix in nginx_routes(conf):
        assert nginx_effective(conf, prefix, "proxy_http_version") == [["1.1"]]
        headers = {name.lower(): value for name, value in nginx_effective(conf, prefix, "proxy_set_header")}
        assert headers["upgrade"] == "$http_upgrade"
        assert headers["connection"] in ("upgrade", "$connection_upgrade")
        assert nginx_effective(conf, prefix, "proxy_buffering") == [["off"]]


@pytest.mark.parametrize("conf", ENTRANCE_CONFS, ids=ENTRANCE_IDS)
def test_entrance_workers_may_open_two_files_for_each_connection_they_take(conf: Path | str, tmp_path: Path) -> None:
    """A viewer takes two of a worker's files (its connection and the one to its node): under the usual
    limit of 1024, viewers past about 500 got a bare 500 ("Too many open files")."""
    parsed = _parse_nginx(entrance_conf(conf, tmp_path))
    open_files = [d["args"] for d in parsed if d["directive"] == "worker_rlimit_nofile"]
    [connections] = [d["args"] for d in _directives(parsed, "worker_connections")]
    assert open_files, "no worker_rlimit_nofile: the workers keep the limit nginx was started with"
    assert int(open_files[0][0]) >= 2 * int(connections[0])


def test_the_k8s_entrance_starts_a_fixed_number_of_workers() -> None:
    """``auto`` starts a worker per CPU of the host, not of the pod: at about 2 MiB each, they took the
    entrance past its memory limit on a host of 130 CPUs or more, which killed it."""
    [workers] = [d["args"] for d in _parse_nginx(K8S_NGINX) if d["directive"] == "worker_processes"]
    assert workers != ["auto"], "worker_processes auto in a pod with a memory limit"
    assert workers[0].isdigit() and int(workers[0]) >= 1


def entrance_conf(param: Path | str, folder: Path) -> Path:
    """An entrance's nginx.conf: a file of deploy/, or for `SPLIT` the one `segcast split` writes for a
    config file of two cameras in ``folder``."""
    if isinstance(param, Path):
        return param
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "cams.toml"
    config.write_text('[[streams]]\nid = "a"\nuri = "scene:?seed=1"\n\n[[streams]]\nid = "b"\nuri = "scene:?seed=2"\n')
    split = split_config(config, 2)
    write_split(split, overwrite=False)
    return split.entrance_path


@dataclass
class StandInNode:
    """A stand-in for a segcast node: says who it is and what it was asked, echoes over /ws, streams
    ``/stream`` as fast as the entrance takes it, counting what it got rid of, and serves the viewer's
    real pages at ``/static/``, as a node does. Every path it is asked for is kept in ``asked``."""

    name: str
    streamed_bytes: int = 0
    stream_finished: asyncio.Event = field(default_factory=asyncio.Event)
    asked: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._note])
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/busy", self._busy)
        app.router.add_static("/static/", WEB)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        return app

    @web.middleware
    async def _note(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.asked.append(request.raw_path)
        return await handler(request)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(f"{self.name}: {message.data}")
        return socket

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        await response.prepare(request)
        chunk = bytes(STREAM_CHUNK_BYTES)
        while self.streamed_bytes < STREAM_TOTAL_BYTES:
            await response.write(chunk)  # waits while the entrance takes nothing more
            self.streamed_bytes += len(chunk)
        self.stream_finished.set()
        return response

    async def _busy(self, request: web.Request) -> web.Response:
        return web.json_response({"error": f"{self.name} is busy"}, status=503)

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "node": self.name,
                "path_qs": request.raw_path,
                "authorization": request.headers.get("Authorization"),
                "forwarded_prefix": request.headers.get("X-Forwarded-Prefix"),
            }
        )


@dataclass(frozen=True)
class Entrance:
    base_url: str
    nodes: dict[str, StandInNode]  # by path prefix
    down: tuple[str, ...] = ()  # the path prefixes of nodes where nothing listens


def nginx_copy(
    conf: Path, folder: Path, port: int, targets: dict[str, str], timeouts: Mapping[str, str] | None = None
) -> Path:
    """``conf`` as it runs here: listening on 127.0.0.1:``port``, ``targets`` (host:port -> host:port)
    swapped in for the node addresses (in upstream groups too), logs and temporary files in ``folder``;
    with ``timeouts`` (a duration as the file writes it -> one to run with), the proxy's read and send
    timeouts of that duration shortened, for a test not to wait a minute. Nothing else changes."""
    parsed = copy.deepcopy(_parse_nginx(conf))
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        for directive in _directives(parsed, name):
            directive["args"] = [(timeouts or {}).get(arg, arg) for arg in directive["args"]]
    for directive in _directives(parsed, "listen"):
        directive["args"] = [f"127.0.0.1:{port}"]
    for upstream in _directives(parsed, "upstream"):
        for directive in upstream["block"]:
            if directive["directive"] == "server" and directive["args"][0] in targets:
                # An address needs no looking up: `resolve` goes (Debian's nginx 1.22 predates it).
                address, *parameters = directive["args"]
                directive["args"] = [targets[address], *(p for p in parameters if p != "resolve")]
    for location in _directives(parsed, "location"):
        for directive in location["block"]:
            if directive["directive"] == "set" and directive["args"][1] in targets:
                directive["args"][1] = targets[directive["args"][1]]
            if directive["directive"] == "proxy_pass":
                host = directive["args"][0].removeprefix("http://").rstrip("/")
                if host in targets:
                    directive["args"][0] = directive["args"][0].replace(host, targets[host])
    # Where the file keeps these itself (a split's entrance does), they are replaced.
    own_files = {"user", "pid", "error_log", "access_log", *(f"{kind}_temp_path" for kind in TEMPORARY_FILES)}
    parsed = [d for d in parsed if d["directive"] not in own_files]
    for directive in parsed:
        if directive["directive"] == "http":
            directive["block"] = [d for d in directive["block"] if d["directive"] not in own_files]
    parsed[:0] = [
        *([{"directive": "user", "args": ["root"]}] if os.geteuid() == 0 else []),  # workers write in folder
        {"directive": "pid", "args": [str(folder / "nginx.pid")]},
        {"directive": "error_log", "args": [str(folder / "error.log")]},
    ]
    http = next(d for d in parsed if d["directive"] == "http")
    http["block"][:0] = [{"directive": "access_log", "args": [str(folder / "access.log")]}] + [
        {"directive": f"{kind}_temp_path", "args": [str(folder / kind)]} for kind in TEMPORARY_FILES
    ]
    path = folder / "nginx.conf"
    path.write_text(crossplane.build(parsed))
    return path


@asynccontextmanager
async def running_nginx(
    conf: Path, folder: Path, targets: dict[str, str], timeouts: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """A real nginx on ``conf`` with ``targets`` swapped in for the node addresses (and ``timeouts``
    shortened: `nginx_copy`); its base URL."""
    port = free_port()
    copied = nginx_copy(conf, folder, port, targets, timeouts)
    async with nginx_serving(copied, f"http://127.0.0.1:{port}/") as base:
        yield base


def require_nginx() -> None:
    """Skip without nginx; fail under ``SEGCAST_REQUIRE_COMPONENTS=1`` (CI), where it must be there."""
    if not NGINX.is_file():
        missing = "needs Debian's nginx (see .ci/run)"
        if os.environ.get("SEGCAST_REQUIRE_COMPONENTS") == "1":
            pytest.fail(missing)
        pytest.skip(missing)


@asynccontextmanager
async def stand_in_entrance(
    param: Path | str, folder: Path, aiohttp_server: Callable[..., Awaitable[TestServer]], first_down: bool = False
) -> AsyncIterator[Entrance]:
    """A real nginx on the entrance config ``param``, in front of a stand-in for each node; with
    ``first_down``, nothing listens where the first node should (its port held, not listened on: a
    port merely free when asked could be another test's server by the time the node is asked)."""
    require_nginx()
    conf = entrance_conf(param, folder / "split")
    targets, nodes, down = {}, {}, []
    with socket.socket() as stopped:
        stopped.bind(("127.0.0.1", 0))
        for index, (prefix, target) in enumerate(nginx_routes(conf).items()):
            if first_down and index == 0:
                targets[target] = f"127.0.0.1:{stopped.getsockname()[1]}"
                down.append(prefix)
                continue
            nodes[prefix] = StandInNode(prefix.strip("/"))
            server = await aiohttp_server(nodes[prefix].app())
            targets[target] = f"127.0.0.1:{server.port}"
        async with running_nginx(conf, folder, targets) as base:
            yield Entrance(base.rstrip("/"), nodes, tuple(down))


@pytest.fixture
async def entrance(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> AsyncIterator[Entrance]:
    """A real nginx on the entrance config ``request.param``, in front of a stand-in for each node."""
    async with stand_in_entrance(request.param, tmp_path, aiohttp_server) as started:
        yield started


@pytest.fixture
async def first_node_down(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> AsyncIterator[Entrance]:
    """As `entrance`, with nothing listening where the first node should: a node stopped."""
    async with stand_in_entrance(request.param, tmp_path, aiohttp_server, first_down=True) as started:
        yield started


both_entrances = pytest.mark.parametrize("entrance", ENTRANCE_CONFS, ids=ENTRANCE_IDS, indirect=True)
every_entrance_first_node_down = pytest.mark.parametrize(
    "first_node_down", ENTRANCE_CONFS, ids=ENTRANCE_IDS, indirect=True
)


@both_entrances
async def test_entrance_sends_each_path_to_its_node_without_the_prefix(entrance: Entrance) -> None:
    async with aiohttp.ClientSession() as session:
        for prefix, node in entrance.nodes.items():
            url = f"{entrance.base_url}{prefix}api/streams/front%20door/snapshot.jpg?image=clean&token=s1.v%2Bw"
            async with session.get(url, headers={"Authorization": "Bearer a-token-of-sixteen-chars"}) as response:
                assert response.status == 200
                seen = await response.json()
            assert seen == {
                "node": node.name,
                "path_qs": "/api/streams/front%20door/snapshot.jpg?image=clean&token=s1.v%2Bw",
                "authorization": "Bearer a-token-of-sixteen-chars",
                "forwarded_prefix": prefix.rstrip("/"),  # where the node's API puts its links
            }
            async with session.get(f"{entrance.base_url}{prefix.rstrip('/')}", allow_redirects=False) as response:
                assert response.status == 301
                assert response.headers["Location"] == prefix


@both_entrances
async def test_entrance_carries_websockets_to_each_node(entrance: Entrance) -> None:
    async with aiohttp.ClientSession() as session:
        for prefix, node in entrance.nodes.items():
            async with session.ws_connect(f"{entrance.base_url}{prefix}ws") as socket:
                await socket.send_str("hello")
                reply = await socket.receive(timeout=WS_REPLY_S)
                assert reply.data == f"{node.name}: hello"


@both_entrances
async def test_a_viewer_that_stops_reading_holds_back_its_node_not_the_entrance(entrance: Entrance) -> None:
    """segcast keeps only the newest frame for a slow viewer, so its latency never grows; that holds
    only if the entrance passes the viewer's back-pressure on instead of spooling the stream."""
    prefix, node = next(iter(entrance.nodes.items()))
    async with aiohttp.ClientSession() as session, session.get(f"{entrance.base_url}{prefix}stream") as response:
        assert response.status == 200
        last = (-1, 0.0)

        async def held_back_or_finished() -> bool:
            nonlocal last
            now = asyncio.get_running_loop().time()
            if node.stream_finished.is_set():
                return True
            if node.streamed_bytes != last[0]:
                last = (node.streamed_bytes, now)
            return node.streamed_bytes > 0 and now - last[1] >= STREAM_STALL_S

        await eventually(held_back_or_finished, STREAM_LIMIT_S, "the node to be held back or to finish")
        assert not node.stream_finished.is_set(), "the entrance took the whole stream from a viewer reading nothing"
        assert node.streamed_bytes < STREAM_TOTAL_BYTES


@both_entrances
async def test_entrance_index_links_every_node(entrance: Entrance) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{entrance.base_url}/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        links = re.findall(r'href="([^"]+)">([^<]+)<', await response.text())
    names = [prefix.strip("/") for prefix in entrance.nodes]
    # Relative links, so a proxy may add a prefix; All cameras (web/fleet.html) comes from any node.
    assert links == [
        (f"all/static/fleet.html?nodes={','.join(names)}", "All cameras"),
        *((f"{name}/", name) for name in names),
    ]


@both_entrances
async def test_a_single_boxs_old_paths_get_a_404_that_names_the_nodes(entrance: Entrance) -> None:
    """After a split the box's address is the entrance's: its old API, /metrics and embed URLs get an
    answer that says where the nodes are (JSON for clients and scrapers), not nginx's bare page."""
    prefixes = list(entrance.nodes)
    async with aiohttp.ClientSession() as session:
        for path in ("/api/streams", "/api/events?after=41", "/api", "/metrics"):
            async with session.get(f"{entrance.base_url}{path}") as response:
                assert response.status == 404, path
                assert response.content_type == "application/json", path
                answer = await response.json()
            assert answer["nodes"] == prefixes
            assert f"{prefixes[0]}api/streams" in answer["error"]
        for path in ("/embed/cam1", "/static/index.html?x=/a/b", "/cam1", "/all/api/streams"):
            url = f"{entrance.base_url}{path}"
            async with session.get(url) as response:
                assert response.status == 404, path
                assert response.content_type == "text/html", path
                page = await response.text()
            links = [urljoin(url, href) for href in re.findall(r'href="([^"]+)"', page)]
            assert links == [f"{entrance.base_url}{prefix}" for prefix in prefixes] + [f"{entrance.base_url}/"], path
    assert not any(node.asked for node in entrance.nodes.values()), "no node is asked for the box's old paths"


async def all_cameras_link(session: aiohttp.ClientSession, base_url: str) -> str:
    """Where the entrance's index at ``base_url`` sends a person for All cameras."""
    async with session.get(f"{base_url}/") as response:
        found = re.search(r'href="([^"]+)">All cameras<', await response.text())
    assert found, "the entrance's index links to All cameras"
    return urljoin(f"{base_url}/", found.group(1))


@every_entrance_first_node_down
async def test_all_cameras_comes_from_a_node_that_answers_while_the_first_is_down(first_node_down: Entrance) -> None:
    entrance = first_node_down
    (up,) = entrance.nodes.values()
    async with aiohttp.ClientSession() as session:
        link = await all_cameras_link(session, entrance.base_url)
        for _ in range(3):  # the first try goes to the node that is down; reloads must not either
            async with session.get(link) as response:
                assert response.status == 200
                assert await response.text() == (WEB / "fleet.html").read_text()
        # Only the pages: an API call there would land on whichever node, not the one meant.
        async with session.get(f"{entrance.base_url}/all/api/streams") as response:
            assert response.status == 404
    assert up.asked == [urlsplit(link).path.removeprefix("/all") + "?" + urlsplit(link).query] * 3


@every_entrance_first_node_down
async def test_a_node_that_does_not_answer_gets_a_page_that_says_so_and_leads_back(first_node_down: Entrance) -> None:
    entrance = first_node_down
    (down,) = entrance.down
    (up,) = entrance.nodes
    async with aiohttp.ClientSession() as session:
        for path in (down, f"{down}static/index.html", f"{down}static/index.html?next=/a/b"):
            url = f"{entrance.base_url}{path}"
            async with session.get(url) as response:
                assert response.status == 502
                assert response.content_type == "text/html"
                page = await response.text()
            assert "This node is not answering" in page
            back = re.search(r'href="([^"]+)">Every node<', page)
            assert back and urljoin(url, back.group(1)) == f"{entrance.base_url}/", "relative, to the index"
        # A node's own error is its own answer, passed as it is.
        async with session.get(f"{entrance.base_url}{up}busy") as response:
            assert response.status == 503
            assert await response.json() == {"error": f"{up.strip('/')} is busy"}
        async with session.get(f"{entrance.base_url}/favicon.ico") as response:
            assert response.status == 204, "no error in the browser's console for the index's icon"


@every_entrance_first_node_down
async def test_a_node_that_does_not_answer_gets_json_for_its_api_metrics_and_health(first_node_down: Entrance) -> None:
    """API clients, Prometheus and health probes read JSON: the page for a person was HTML to them."""
    entrance = first_node_down
    (down,) = entrance.down
    async with aiohttp.ClientSession() as session:
        for method, path in (
            ("GET", "api/streams"),
            ("GET", "api"),
            ("POST", "api/streams"),
            ("GET", "api/streams/cam1/snapshot.jpg?token=s1.v"),
            ("GET", "metrics"),
            ("GET", "healthz"),
        ):
            async with session.request(method, f"{entrance.base_url}{down}{path}", json={}) as response:
                assert response.status == 502, path
                assert response.content_type == "application/json", path
                answer = await response.json()
            assert answer == {
                "error": f"the node at {down} is not answering: it is stopped, starting or overloaded",
                "node": down,
            }, path
        # A person's pages keep the page that leads back.
        async with session.get(f"{entrance.base_url}{down}static/index.html") as response:
            assert response.status == 502
            assert response.content_type == "text/html"


@every_entrance_first_node_down
async def test_the_entrances_healthz_is_nginxs_and_a_nodes_is_under_its_path(first_node_down: Entrance) -> None:
    """The entrance's /healthz answers while a node is down (it says nginx answers); a probe of a
    node asks for its own, through its path, and gets the node's answer or a 502."""
    entrance = first_node_down
    (down,) = entrance.down
    (up,) = entrance.nodes
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{entrance.base_url}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{entrance.base_url}{down}healthz") as response:
            assert response.status == 502
        async with session.get(f"{entrance.base_url}{up}healthz") as response:
            assert response.status == 200
            assert (await response.json())["path_qs"] == "/healthz"


#: Clients of the entrance, each at an address of its own (all of 127.0.0.0/8 is this machine): enough
#: that the nodes' share of them leaves none without one but once in a billion tries.
CLIENT_ADDRESSES = [f"127.0.0.{host}" for host in range(1, 33)]
#: A script's imports of the viewer's other modules, relative to the script.
MODULE_IMPORT = re.compile(r'(?:import|from)\s*"(\.{1,2}/[^"]+)"')
#: The header each node of `rolling_upgrade` marks its answers with.
ANSWERED_BY = "X-Answered-By"
UPGRADED, OLDER = "upgraded", "older"


def answered_by(app: web.Application, node: str) -> web.Application:
    """``app``, marking every answer it gives as ``node``'s."""

    async def mark(_: web.Request, response: web.StreamResponse) -> None:
        response.headers[ANSWERED_BY] = node

    app.on_response_prepare.append(mark)
    return app


def older_node() -> web.Application:
    """A stand-in for a segcast before the viewer's tags (0.1.0): the viewer's files at
    ``/static/<name>``, their references untagged, and nothing under ``/static/<tag>/``."""
    app = web.Application()
    app.router.add_static("/static/", WEB)
    return answered_by(app, OLDER)


@pytest.fixture
async def rolling_upgrade(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> AsyncIterator[str]:
    """A real nginx on the entrance config ``request.param`` halfway through a rolling upgrade: its
    first node this segcast, the others an older one; its base URL."""
    require_nginx()
    conf = entrance_conf(request.param, tmp_path / "split")
    targets = {}
    for index, target in enumerate(nginx_routes(conf).values()):
        upgraded = index == 0
        app = answered_by(create_app(Settings(model=str(BUNDLED_MODEL))), UPGRADED) if upgraded else older_node()
        targets[target] = f"127.0.0.1:{(await aiohttp_server(app)).port}"
    async with running_nginx(conf, tmp_path, targets) as base:
        yield base.rstrip("/")


every_entrance_mid_upgrade = pytest.mark.parametrize("rolling_upgrade", ENTRANCE_CONFS, ids=ENTRANCE_IDS, indirect=True)


@dataclass(frozen=True)
class Answer:
    path: str
    status: int
    node: str | None


def client_at(address: str) -> aiohttp.ClientSession:
    """A client of the entrance whose requests come from ``address``."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[Answer, str]:
    async with session.get(url) as response:
        return Answer(urlsplit(url).path, response.status, response.headers.get(ANSWERED_BY)), await response.text()


async def page_and_scripts(session: aiohttp.ClientSession, page_url: str) -> list[Answer]:
    """All cameras' page at ``page_url``, then every script and stylesheet it runs (the modules its
    scripts import too), as a browser asks for them."""
    page, text = await fetch(session, page_url)
    answers = [page]
    wanted = [urljoin(page_url, reference) for reference in re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', text)]
    asked: set[str] = set()
    while wanted:
        url = wanted.pop()
        if url in asked:
            continue
        asked.add(url)
        answer, body = await fetch(session, url)
        answers.append(answer)
        if url.endswith(".js"):
            wanted += [urljoin(url, module) for module in MODULE_IMPORT.findall(body)]
    return answers


@every_entrance_mid_upgrade
async def test_all_cameras_comes_whole_from_one_node_while_the_nodes_run_two_versions(rolling_upgrade: str) -> None:
    """Mid-upgrade, the nodes taken in turn sent the new node's page's scripts (under its tag) to an
    older node, whose 404 nginx passed on, and the older page's scripts to the new node: a page of
    one version over the scripts of another. Each client's page and scripts now come from one node."""
    for address in CLIENT_ADDRESSES[:8]:
        async with client_at(address) as session:
            link = await all_cameras_link(session, rolling_upgrade)
            for _ in range(3):
                page, *scripts = await page_and_scripts(session, link)
                assert page.status == 200
                assert all(script == Answer(script.path, 200, page.node) for script in scripts), (address, scripts)
                assert len(scripts) > 2, "the page runs its scripts, their modules and its stylesheet"
                reloaded, _ = await fetch(session, link)  # its scripts cached: the page alone
                assert reloaded.status == 200


@every_entrance_mid_upgrade
async def test_a_script_a_clients_node_lacks_comes_from_a_node_that_has_it(rolling_upgrade: str) -> None:
    """A client whose node changed since its page loaded (the node it was sent to came back from its
    10 s out, or its address changed): the new node's page's scripts, under its tag, asked at an
    older node, which has none under a tag. Another node answers them."""
    pages: dict[str, list[Answer]] = {}
    for address in CLIENT_ADDRESSES:
        async with client_at(address) as session:
            pages[address] = await page_and_scripts(session, await all_cameras_link(session, rolling_upgrade))
    sent_to = {answers[0].node for answers in pages.values()}
    assert sent_to == {UPGRADED, OLDER}, f"every client was sent to the same node: {sent_to}"
    tagged = next(answers for answers in pages.values() if answers[0].node == UPGRADED)
    for address in CLIENT_ADDRESSES:
        async with client_at(address) as session:
            for script in tagged[1:]:
                answer, _ = await fetch(session, f"{rolling_upgrade}{script.path}")
                assert answer.status == 200, (address, script.path)
