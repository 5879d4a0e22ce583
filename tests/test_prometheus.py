"""deploy/prometheus/prometheus.yml, run by a real Prometheus against a running segcast; and
prometheus-fleet.yml against two segcast nodes behind a real nginx entrance (`segcast split`'s).

What a user copies to get segcast's counts into Grafana must work as shipped: Prometheus (Debian's
package) reads the file, scrapes segcast's /metrics, and its own query API then has the counters of
a stream's line (listed from its first frame, as the line watches one class), which the dashboard's
queries build on (tests/test_dashboard.py evaluates those). With tokens on, the file's commented lines, uncommented
as it says, must be what makes the scrape pass: without them it is refused. And what /metrics says of
a stream or output in trouble must be what an alert on it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.deploy.entrance import Listen, nginx_config
from server.events.config import EventsSettings, HistorySettings, WebhookSettings
from server.inference.models import BUNDLED_MODEL
from server.options import StreamOptions
from tests.support.certificates import self_signed
from tests.support.components import require_component
from tests.support.nginx import NGINX, nginx_serving
from tests.support.polling import eventually
from tests.support.ports import free_port
from tests.support.triton_server import TritonProcess

pytestmark = pytest.mark.timeout(120)

CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "prometheus.yml"
FLEET_CONFIG = CONFIG.with_name("prometheus-fleet.yml")
SCALING_DOC = CONFIG.parents[2] / "docs" / "scaling.md"
SHIPPED_TARGET = '"127.0.0.1:8080"'
VIEWER_TOKEN = "prometheus-viewer-token-0123456789"
#: A line limited to one class: its counters are exported at 0 from the first frame.
DOOR = StreamConfig(
    "door",
    "scene:?seed=3",
    options=StreamOptions.from_mapping(
        {"lines": [{"name": "gate", "points": [[0.5, 0.05], [0.5, 0.95]], "units": "fraction", "classes": ["disc"]}]}
    ),
)
#: The first scrape comes within one scrape interval (5 s) of Prometheus being ready.
SCRAPE_TIMEOUT_S = 60.0
#: The lines each file shows, commented, for a segcast (or entrance) that speaks HTTPS, and for its CA.
HTTPS_LINES = ("scheme: https",)
CA_LINES = ("tls_config:", "  ca_file: segcast-ca.pem")
#: Each file's commented job for Triton's metrics port, at the service name deploy/ gives Triton.
TRITON_TARGET = '"triton:8002"'
TRITON_JOB = ("- job_name: triton", "  static_configs:", f"    - targets: [{TRITON_TARGET}]")


def uncomment(config: Path, lines: tuple[str, ...]) -> None:
    """Uncomment ``lines`` of the scrape job in ``config``, as its comments say to."""
    text = config.read_text()
    for line in lines:
        assert f"    # {line}\n" in text, f"the file shows the line {line!r}"
        text = text.replace(f"    # {line}\n", f"    {line}\n")
    config.write_text(text)


def uncomment_triton_job(config: Path, target: str = TRITON_TARGET) -> None:
    """Uncomment ``config``'s job for Triton's metrics, as its comments say to, scraping ``target``."""
    text = config.read_text()
    for line in TRITON_JOB:
        assert f"  # {line}\n" in text, f"the file shows the line {line!r}"
        text = text.replace(f"  # {line}\n", f"  {line}\n")
    config.write_text(text.replace(TRITON_TARGET, target))


def prometheus_config(tmp_path: Path, port: int, with_token: bool, shipped: Path = CONFIG) -> Path:
    """The ``shipped`` file pointed at ``port``; with its token lines uncommented, as it says, and the token file."""
    text = shipped.read_text()
    assert SHIPPED_TARGET in text, "the file names the address `segcast serve` listens on by default"
    text = text.replace(SHIPPED_TARGET, f'"127.0.0.1:{port}"')
    if with_token:
        commented = "    # authorization:\n    #   credentials_file: segcast-viewer.token\n"
        assert commented in text, "the file shows how to give Prometheus a viewer token"
        text = text.replace(commented, commented.replace("# ", ""))
        (tmp_path / "segcast-viewer.token").write_text(VIEWER_TOKEN + "\n")
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    return path


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """Starts Debian's prometheus on a config file (on a free port, its data in ``tmp_path``); returns its URL."""
    binary = shutil.which("prometheus")
    require_component(binary is not None, "needs prometheus from Debian's prometheus package (see .ci/run)")
    assert binary is not None
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: Path) -> str:
        port = free_port()
        command = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}"]
        command.append(f"--web.listen-address=127.0.0.1:{port}")
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def api(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    """Prometheus' JSON answer, or None while it is starting (no connection yet, or 503 until ready)."""
    try:
        async with http.get(url) as response:
            if response.status == 503:
                return None
            body: dict[str, Any] = json.loads(await response.text())
            return body
    except aiohttp.ClientConnectionError:
        return None


async def query(http: aiohttp.ClientSession, prometheus: str, expr: str) -> list[dict[str, Any]] | None:
    """The instant vector ``expr`` gives (None while Prometheus is not answering yet)."""
    body = await api(http, f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}")
    if body is None:
        return None
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def scrape_health(http: aiohttp.ClientSession, prometheus: str) -> tuple[float, str]:
    """``up`` of the segcast job once it has been scraped, and the scrape's error."""

    async def scraped() -> tuple[float, str] | None:
        body = await api(http, f"{prometheus}/api/v1/targets")
        if body is None:
            return None
        segcast = [t for t in body["data"]["activeTargets"] if t["labels"]["job"] == "segcast"]
        if not segcast or segcast[0]["health"] == "unknown":
            return None
        health, error = segcast[0]["health"], segcast[0]["lastError"]
        if health == "down" and not error:  # seen once in a fresh-clone run: a failed scrape not yet told why
            return None
        return (1.0 if health == "up" else 0.0), error

    return await eventually(scraped, SCRAPE_TIMEOUT_S, "Prometheus' first scrape of segcast")


@pytest.mark.parametrize("with_tokens", [False, True], ids=["no tokens (the default)", "viewer token"])
async def test_prometheus_scrapes_segcast_with_the_shipped_config(
    start_server: Callable[..., Awaitable[TestClient]],
    prometheus: Callable[[Path], str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
    with_tokens: bool,
) -> None:
    tokens = {"viewer_tokens": (VIEWER_TOKEN,)} if with_tokens else {}
    client = await start_server(DOOR, **tokens)
    port = client.server.port
    assert port is not None
    url = prometheus(prometheus_config(tmp_path, port, with_token=with_tokens))

    up, error = await scrape_health(http, url)
    assert (up, error) == (1.0, ""), "Prometheus scrapes segcast's /metrics with the file as documented"

    async def gate_counts() -> list[dict[str, Any]] | None:
        found = await query(http, url, 'segcast_line_crossings_total{stream="door",line="gate"}')
        return found or None

    series = await eventually(gate_counts, SCRAPE_TIMEOUT_S, "the line's counters in Prometheus")
    assert {(s["metric"]["class"], s["metric"]["direction"]) for s in series} == {("disc", "in"), ("disc", "out")}
    assert all(s["metric"]["job"] == "segcast" for s in series)


async def test_with_tokens_the_scrape_needs_the_token_lines(
    start_server: Callable[..., Awaitable[TestClient]],
    prometheus: Callable[[Path], str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The file as shipped, against a segcast with tokens: refused, and Prometheus says why."""
    client = await start_server(DOOR, viewer_tokens=(VIEWER_TOKEN,))
    port = client.server.port
    assert port is not None
    url = prometheus(prometheus_config(tmp_path, port, with_token=False))
    up, error = await scrape_health(http, url)
    assert up == 0.0 and "401" in error


@pytest.mark.parametrize("with_ca", [False, True], ids=["scheme https alone", "and the CA lines"])
async def test_over_https_with_a_self_signed_certificate_the_scrape_needs_the_ca_lines(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    prometheus: Callable[[Path], str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
    with_ca: bool,
) -> None:
    """A certificate no system store trusts (self-signed, mkcert's): `scheme: https` alone fails on it."""
    # Given segcast speaking HTTPS with a self-signed certificate, its CA beside the config
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = TestServer(create_app(Settings(model=str(BUNDLED_MODEL), streams=(DOOR,))), scheme="https")
    await server.start_server(ssl=context)
    await aiohttp_client(server)  # closes it after the test
    assert server.port is not None
    (tmp_path / "segcast-ca.pem").write_bytes(cert.read_bytes())
    # When Prometheus scrapes it with the file's HTTPS lines uncommented, and its CA lines or not
    config = prometheus_config(tmp_path, server.port, with_token=False)
    uncomment(config, HTTPS_LINES + (CA_LINES if with_ca else ()))
    up, error = await scrape_health(http, prometheus(config))
    # Then only with the CA lines does it trust the certificate
    if with_ca:
        assert (up, error) == (1.0, "")
    else:
        assert up == 0.0 and "x509: certificate signed by unknown authority" in error, error


async def metric_samples(client: TestClient) -> dict[str, float]:
    """Each sample of segcast's /metrics, by its name and labels as written."""
    text = await (await client.get("/metrics")).text()
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in lines}


async def test_a_stream_with_no_recent_frame_has_no_latency_sample(
    start_server: Callable[..., Awaitable[TestClient]],
) -> None:
    """Not a latency of 0 s: a stream whose frames stopped would read as the fastest, and an alert on
    ``segcast_latency_seconds > 2`` would never fire for it."""
    # Given a live stream and one whose camera cannot be reached, so it has never had a frame
    down = StreamConfig("down", f"rtsp://127.0.0.1:{free_port()}/nothing")
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), down)

    async def cam_has_latency() -> dict[str, float] | None:
        samples = await metric_samples(client)
        return samples if samples.get('segcast_latency_seconds{stream="cam"}', 0.0) > 0 else None

    # Then the live one has its latency, the other none, and processes 0 frames a second (which is true)
    samples = await eventually(cam_has_latency, SCRAPE_TIMEOUT_S, "the live stream's latency")
    assert 'segcast_latency_seconds{stream="down"}' not in samples
    assert samples['segcast_processed_fps{stream="down"}'] == 0.0


async def test_the_events_an_output_has_yet_to_send_are_a_gauge(
    start_server: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    """A webhook that never answers holds one event on its way and queues the rest: none is delivered,
    failed or dropped yet, so only ``segcast_event_output_queued`` shows them. The history's are stored."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections are taken (by the kernel) and never answered
        port = silent.getsockname()[1]
        hook = WebhookSettings(f"http://127.0.0.1:{port}/hook", timeout_s=SCRAPE_TIMEOUT_S * 10)
        events = EventsSettings(history=HistorySettings(tmp_path / "events.db"), webhooks=(hook,))
        client = await start_server(StreamConfig("cam", "scene:?seed=1"), events=events)
        webhook = f'{{output="webhook http://127.0.0.1:{port}/***"}}'

        async def held_up() -> dict[str, float] | None:
            samples = await metric_samples(client)
            stored = samples.get('segcast_event_output_delivered_total{output="history"}', 0.0)
            history_queued = samples.get('segcast_event_output_queued{output="history"}')
            waiting = samples.get(f"segcast_event_output_queued{webhook}", 0.0)
            return samples if stored >= 2 and history_queued == 0 and waiting >= 2 else None

        samples = await eventually(held_up, SCRAPE_TIMEOUT_S, "the webhook's events to wait, the history's stored")
        kinds = ("delivered", "failed", "dropped")
        assert [samples[f"segcast_event_output_{kind}_total{webhook}"] for kind in kinds] == [0.0, 0.0, 0.0]


def promtool_check(config: Path) -> None:
    """`promtool check config` passes on ``config`` (its token file, where named, beside it)."""
    promtool = shutil.which("promtool")
    require_component(promtool is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert promtool is not None
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("with_token", [False, True], ids=["as shipped", "token lines uncommented"])
def test_the_fleet_config_is_valid_as_shipped_and_with_its_token_lines(tmp_path: Path, with_token: bool) -> None:
    promtool_check(prometheus_config(tmp_path, 8080, with_token, FLEET_CONFIG))


@pytest.mark.parametrize("shipped", [CONFIG, FLEET_CONFIG], ids=["prometheus.yml", "prometheus-fleet.yml"])
def test_each_config_is_valid_with_its_https_and_ca_lines(tmp_path: Path, shipped: Path) -> None:
    config = prometheus_config(tmp_path, 8080, with_token=True, shipped=shipped)
    uncomment(config, HTTPS_LINES + CA_LINES)
    promtool_check(config)


@pytest.mark.parametrize("shipped", [CONFIG, FLEET_CONFIG], ids=["prometheus.yml", "prometheus-fleet.yml"])
def test_each_config_is_valid_with_its_triton_job_uncommented(tmp_path: Path, shipped: Path) -> None:
    config = prometheus_config(tmp_path, 8080, with_token=True, shipped=shipped)
    uncomment_triton_job(config)
    promtool_check(config)
    # At the Triton the deploy files run: Compose's service and Kubernetes' Service, with its metrics port.
    deploy = CONFIG.parents[1]
    assert "\n  triton:\n" in (deploy / "compose.yaml").read_text()
    service = (deploy / "k8s" / "triton.yaml").read_text().split("kind: Service\n", 1)[1]
    assert "  name: triton\n" in service and "    - name: metrics\n      port: 8002\n" in service


async def test_the_triton_job_scrapes_tritons_per_model_series(
    prometheus: Callable[[Path], str], http: aiohttp.ClientSession, tmp_path: Path, triton_repository: Path
) -> None:
    """The job, uncommented and pointed at a real Triton's metrics port, gets the series the dashboard's
    Triton panels read, by model."""
    with TritonProcess(triton_repository) as triton:
        config = prometheus_config(tmp_path, free_port(), with_token=False)
        uncomment_triton_job(config, f'"127.0.0.1:{triton.metrics_port}"')
        url = prometheus(config)

        async def executions() -> list[dict[str, Any]] | None:
            return await query(http, url, 'nv_inference_exec_count{job="triton"}') or None

        series = await eventually(executions, SCRAPE_TIMEOUT_S, "Triton's series in Prometheus")
    assert {s["metric"]["model"] for s in series} == {"segcast-scene-seg"}


async def test_a_node_names_the_model_it_runs(start_server: Callable[..., Awaitable[TestClient]]) -> None:
    """Always there, a model run here too, so a node's series can be joined to its model by instance."""
    samples = await metric_samples(await start_server())
    info = {name: value for name, value in samples.items() if name.startswith("segcast_model_info")}
    assert info == {f'segcast_model_info{{model="{BUNDLED_MODEL}",server=""}}': 1.0}


async def targets_by_instance(http: aiohttp.ClientSession, prometheus: str) -> dict[str, dict[str, Any]]:
    """The segcast job's scraped targets by their instance label (empty while Prometheus starts)."""
    body = await api(http, f"{prometheus}/api/v1/targets")
    if body is None:
        return {}
    found = [t for t in body["data"]["activeTargets"] if t["labels"]["job"] == "segcast"]
    return {t["labels"]["instance"]: t for t in found if t["health"] != "unknown"}


async def test_the_fleet_config_scrapes_each_node_through_the_entrance_under_its_name(
    start_server: Callable[..., Awaitable[TestClient]],
    prometheus: Callable[[Path], str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Through the entrance every node has one address: each must still be its own instance, up
    while it answers and down (the entrance's 502) once it stops, which is what an alert reads."""
    require_component(NGINX.is_file(), "needs Debian's nginx (see .ci/run)")
    # Given two segcast nodes behind the entrance `segcast split` writes
    nodes = [await start_server(StreamConfig(f"cam{i}", f"scene:?seed={i}")) for i in (1, 2)]
    ports = [port for node in nodes if (port := node.server.port) is not None]
    assert len(ports) == 2
    entrance_port = free_port()
    state = tmp_path / "entrance"
    state.mkdir()
    conf = state / "nginx.conf"
    text = nginx_config(Listen("127.0.0.1", entrance_port), ports, "test", state)
    conf.write_text(("user root;\n" if os.geteuid() == 0 else "") + text)  # its workers write in state
    async with nginx_serving(conf, f"http://127.0.0.1:{entrance_port}/"):
        # When Prometheus scrapes them with the fleet file, pointed at that entrance
        url = prometheus(prometheus_config(tmp_path, entrance_port, with_token=False, shipped=FLEET_CONFIG))

        async def both_up() -> dict[str, dict[str, Any]] | None:
            found = await targets_by_instance(http, url)
            return found if len(found) == 2 and all(t["health"] == "up" for t in found.values()) else None

        # Then each node is up under its own name, and its streams are its own
        targets = await eventually(both_up, SCRAPE_TIMEOUT_S, "both nodes scraped through the entrance")
        assert {name: t["scrapeUrl"] for name, t in targets.items()} == {
            f"node-{i}": f"http://127.0.0.1:{entrance_port}/node-{i}/metrics" for i in (1, 2)
        }

        async def streams_by_node() -> set[tuple[str, str]] | None:
            found = await query(http, url, 'segcast_stream_state{state="live"} == 1')
            pairs = {(s["metric"]["instance"], s["metric"]["stream"]) for s in found or []}
            return pairs if len(pairs) == 2 else None

        assert await eventually(streams_by_node, SCRAPE_TIMEOUT_S, "each node's stream") == {
            ("node-1", "cam1"),
            ("node-2", "cam2"),
        }

        # And once node 2 stops, it alone is down: `up == 0` fires for it
        await nodes[1].close()

        async def node_2_down() -> dict[str, dict[str, Any]] | None:
            found = await targets_by_instance(http, url)
            return found if found.get("node-2", {}).get("health") == "down" else None

        targets = await eventually(node_2_down, SCRAPE_TIMEOUT_S, "node 2 to be scraped as down")
        assert targets["node-1"]["health"] == "up"
        assert "502" in targets["node-2"]["lastError"]
        down = await query(http, url, 'up{job="segcast"} == 0')
        assert [s["metric"]["instance"] for s in down or []] == ["node-2"]


def test_the_fleet_alerts_in_docs_scaling_are_valid_rules(tmp_path: Path) -> None:
    """What docs/scaling.md, "Monitoring a fleet", gives to copy must load in Prometheus as written."""
    section = SCALING_DOC.read_text().split("\n## Monitoring a fleet\n", 1)[1].split("\n## ", 1)[0]
    rules = [block for block in section.split("```yaml\n")[1:] if block.startswith("groups:")]
    assert len(rules) == 1, "the section has one block of alerting rules"
    path = tmp_path / "segcast-fleet.rules.yml"
    path.write_text(rules[0].split("```", 1)[0])
    promtool = shutil.which("promtool")
    require_component(promtool is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert promtool is not None
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "SUCCESS: 2 rules found" in result.stdout, result.stdout + result.stderr
