"""Where segcast keeps what it writes in its containers, and what it says when it cannot write or
install there.

Compose mounts each node's config read-only (``:ro``) and Kubernetes from a ConfigMap (always
read-only), so an event history in its default place, beside the config, loses every event: the node
files show one in a writable volume instead. Read rather than run: no Docker engine or cluster here.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from server.config import load_config
from server.events.history import reader as history
from server.inference.models import install_hint
from tests.test_deploy import (
    K8S,
    compose,
    compose_node_config,
    compose_nodes,
    container,
    flag_value,
    k8s_object,
    mount_path,
)
from tests.test_docker import instructions

#: The commented ``[events.history]`` of a node file and its ``# key = value`` lines.
HISTORY_EXAMPLE = re.compile(r"^# \[events\.history\]\n(?:# \w+ = .*\n)*", re.MULTILINE)


def history_paths(config: Path, mounted_at: str, scratch: Path) -> list[PurePosixPath]:
    """Where in its container the node started with ``config`` (mounted at ``mounted_at`` there) keeps
    its event history: as the file is, and as it is with its commented ``[events.history]`` on."""
    found = []
    history_on = load_config(config).events.history
    if history_on is not None:
        found.append((history_on.path, config.parent))
    text = config.read_text()
    example = HISTORY_EXAMPLE.search(text)
    if example is not None:
        uncommented = re.sub(r"^# ", "", example[0], flags=re.MULTILINE)
        scratch.mkdir(parents=True, exist_ok=True)
        copy = scratch / config.name
        copy.write_text(text[: example.start()] + uncommented + text[example.end() :])
        example_on = load_config(copy).events.history
        assert example_on is not None, f"{config.name}: the example does not turn the history on"
        found.append((example_on.path, scratch))
    # A relative path is taken from the config's folder: in the container, the mount's.
    in_container = PurePosixPath(mounted_at).parent
    return [
        in_container / path.relative_to(folder) if path.is_relative_to(folder) else PurePosixPath(path)
        for path, folder in found
    ]


def writable_compose_volumes(service: dict[str, Any]) -> dict[PurePosixPath, str]:
    """Container path -> named volume, for the service's volumes mounted read-write."""
    named = compose().get("volumes") or {}
    found = {}
    for entry in service.get("volumes", []):
        source, target, *mode = entry.split(":")
        if source in named and "ro" not in ",".join(mode).split(","):
            found[PurePosixPath(target)] = source
    return found


def test_compose_nodes_keep_their_event_history_in_a_volume_of_their_own(tmp_path: Path) -> None:
    held_by = {}
    for name, service in compose_nodes().items():
        config = compose_node_config(service)
        paths = history_paths(config, flag_value(service["command"], "--config"), tmp_path / name)
        assert paths, f"{config.name}: show where an event history must go ([events.history] path)"
        volumes = writable_compose_volumes(service)
        for path in paths:
            holding = [volume for target, volume in volumes.items() if path.is_relative_to(target)]
            assert holding, f"{name}: {path} is on no writable volume of the node: its events would be lost"
            held_by[name] = holding[0]
    assert len(set(held_by.values())) == len(held_by), f"two nodes would write one history: {held_by}"


def test_kubernetes_nodes_keep_their_event_history_in_a_writable_volume_of_the_pod(tmp_path: Path) -> None:
    statefulset = k8s_object("StatefulSet", "segcast")
    pod = statefulset["spec"]["template"]["spec"]
    claims = {claim["metadata"]["name"] for claim in statefulset["spec"].get("volumeClaimTemplates", [])}
    kept = {v["name"] for v in pod["volumes"] if "emptyDir" in v or "persistentVolumeClaim" in v} | claims
    node = container(pod, "segcast")
    writable = [
        PurePosixPath(mount["mountPath"])
        for mount in node["volumeMounts"]
        if mount["name"] in kept and not mount.get("readOnly", False)
    ]
    for ordinal in range(statefulset["spec"]["replicas"]):
        config = K8S / "nodes" / f"segcast-{ordinal}.toml"
        paths = history_paths(config, f"{mount_path(node, 'config')}/{config.name}", tmp_path / config.stem)
        assert paths, f"{config.name}: show where an event history must go ([events.history] path)"
        for path in paths:
            assert any(path.is_relative_to(target) for target in writable), (
                f"segcast-{ordinal}: {path} is on no writable volume of the pod: its events would be lost"
            )


def image_environment() -> dict[str, str]:
    """The variables the Dockerfile's ENV steps set in the image."""
    found = {}
    for kind, arguments in instructions():
        if kind == "ENV":
            found |= dict(word.split("=", 1) for word in arguments.split())
    return found


def test_a_missing_extra_in_the_image_names_the_image_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image has no checkout to ``pip install '.[...]'`` in, and its user cannot install."""
    for name, value in image_environment().items():
        monkeypatch.setenv(name, value)
    hint = install_hint("openvino")
    assert "segcast's folder" not in hint, hint
    assert "openvino" in hint and "Dockerfile" in hint and "docker build" in hint, hint


def test_a_missing_extra_from_a_checkout_names_pip_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in image_environment():
        if name.startswith("SEGCAST_"):
            monkeypatch.delenv(name, raising=False)
    assert install_hint("openvino") == "pip install '.[openvino]' in segcast's folder"


def test_a_history_on_a_read_only_file_system_names_a_read_only_mount_and_the_fix() -> None:
    """A Compose ``:ro`` file or a ConfigMap is read-only by design: remounting is not the fix."""
    hint = history.READ_ONLY_HINT
    assert ":ro" in hint and "ConfigMap" in hint, hint
    assert "events.history.path" in hint and "writable volume" in hint, hint
