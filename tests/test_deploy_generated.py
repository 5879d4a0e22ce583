"""deploy/'s Compose and Kubernetes entrances say what `entrance_config` writes for their nodes.

The entrance was kept in three copies by hand (a split's, generated; Compose's and Kubernetes',
written out): a change made to one (a time-out, a location) was missed in the others. Each committed
file keeps its own comments, for the person editing it; its directives, read by nginx's own grammar
(crossplane), must be the generator's for the same nodes, written as that file reaches them: names
Docker's DNS looks up per request, or Services looked up once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import crossplane
import pytest

from server.config import load_config
from server.deploy.entrance import Listen, Nodes, entrance_config
from tests.test_deploy import (
    COMPOSE,
    COMPOSE_NGINX,
    K8S_NGINX,
    compose,
    compose_node_config,
    compose_nodes,
    container,
    k8s_object,
    port_number,
)

#: Docker's own DNS server, in every user-defined network, as the Compose entrance asks it.
DOCKER_DNS = "127.0.0.11 valid=10s ipv6=off"
#: The Kubernetes entrance's worker processes: a number, as `auto` counts the host's CPUs, not the pod's.
K8S_WORKERS = 2


def compose_entrance() -> tuple[Listen, Nodes, int | None]:
    """Where the Compose entrance listens in its container, its nodes by service name and port, and
    its worker processes (None: one per CPU)."""
    published = compose()["services"]["entrance"]["ports"]
    (port,) = {int(mapping.split(":")[-1]) for mapping in published}
    names = tuple(compose_nodes())
    ports = [load_config(compose_node_config(service)).port for service in compose_nodes().values()]
    nodes = Nodes(names, tuple(f"{n}:{p}" for n, p in zip(names, ports, strict=True)), DOCKER_DNS)
    return Listen("", port), nodes, None


def k8s_entrance() -> tuple[Listen, Nodes, int | None]:
    """Where the Kubernetes entrance listens in its pod, its nodes by their pods' Services, and its
    worker processes."""
    pod = k8s_object("Deployment", "entrance")["spec"]["template"]["spec"]
    replicas = k8s_object("StatefulSet", "segcast")["spec"]["replicas"]
    names = tuple(f"segcast-{ordinal}" for ordinal in range(replicas))
    ports = [k8s_object("Service", name)["spec"]["ports"][0]["port"] for name in names]
    addresses = tuple(f"{name}:{port}" for name, port in zip(names, ports, strict=True))
    listen = Listen("", port_number(container(pod, "nginx"), "http"))
    return listen, Nodes(addresses=addresses, names=names), K8S_WORKERS


@pytest.mark.parametrize(
    ("committed", "entrance"), [(COMPOSE_NGINX, compose_entrance), (K8S_NGINX, k8s_entrance)], ids=["compose", "k8s"]
)
def test_the_committed_entrance_is_the_generators_for_its_nodes(committed: Path, entrance: Any, tmp_path: Path) -> None:
    listen, nodes, workers = entrance()
    generated = tmp_path / "nginx.conf"
    generated.write_text(entrance_config(listen, nodes, header=f"# for {committed}", workers=workers))
    assert _directives(committed) == _directives(generated), (
        f"{committed.relative_to(COMPOSE.parents[1])} differs from what server/deploy/entrance.py writes for "
        "its nodes: change both, or write the file from it"
    )


def _directives(conf: Path) -> str:
    """``conf`` as nginx reads it (its directives, their arguments and blocks), without its comments and
    layout: one directive a line, as crossplane writes them, for a readable difference."""
    payload = crossplane.parse(str(conf), single=True, comments=False)
    assert payload["status"] == "ok", payload["errors"]
    return crossplane.build(payload["config"][0]["parsed"], indent=4) + "\n"
