"""``segcast split`` again over running nodes: what they run beyond their files, asked of them.

A node keeps its streams in memory: a camera added through its API without ``?persist=1`` runs in no
file, and a restart from the file drops it. Real nodes started from the files a split wrote, cameras
added through their real API; and a node file that cannot be read, which no node can be asked about.
A stand-in node where what matters is only which token it takes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.cli import main
from server.deploy import running_nodes
from server.deploy.running_nodes import NodeStreams
from server.deploy.split import EarlierNode
from server.http.access.tokens import ADMIN_TOKENS_ENV
from tests.support.http_stand_in import serving
from tests.support.ports import consecutive_free_ports, free_port
from tests.test_split import (  # noqa: F401
    NODES_TIMEOUT_S,
    _listening,
    _node,
    _start_node,
    _stop_node,
    _wait_until_listening,
    nodes,
)

TOKEN = "токен-узлов-schlüssel-0123"  # beyond Latin-1: sent as UTF-8, as the node reads it
CAMERAS = "".join(f'[[streams]]\nid = "{name}"\nuri = "scene:?seed={i}"\n\n' for i, name in enumerate("abc", 1))


@pytest.fixture
def nodes_with_tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Mapping[Path, str]], None]]:
    """``start({path: token})``: as `nodes`, each node started with its own ``$SEGCAST_ADMIN_TOKENS``, the
    way nodes started by hand, each in its own shell, come to hold different tokens."""
    started: list[tuple[Path, subprocess.Popen[str]]] = []

    def start(tokens: Mapping[Path, str]) -> None:
        for path, token in tokens.items():
            monkeypatch.setenv(ADMIN_TOKENS_ENV, token)
            started.append((path, _start_node(path)))
        for path, process in started:
            _wait_until_listening(process, path)

    yield start
    with ExitStack() as stops:
        for _, process in started:
            stops.callback(_stop_node, process)


def _config(folder: Path, server: str = "") -> Path:
    """cams.toml of three generated cameras (a, b, c), its entrance at a free port."""
    config = folder / "cams.toml"
    config.write_text(f'[server]\nport = {free_port()}\n{server}\n[model]\nname = "bundled"\n\n' + CAMERAS)
    return config


async def _add(port: int, body: dict[str, str], token: str | None = None) -> None:
    """A camera added to the node at ``port`` through its API, as a user would: not saved (no ?persist=1)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/api/streams", json=body, headers=headers) as response,
    ):
        assert response.status == 201, await response.text()


@pytest.mark.timeout(NODES_TIMEOUT_S)
async def test_a_resplit_names_the_cameras_a_running_node_runs_that_its_file_lacks(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    nodes: Callable[..., None],  # noqa: F811
) -> None:
    """A camera added to node-2 without ?persist=1 was in no file, so the split never named it and told
    the user to restart node-2, which dropped it; one added to node-2 that node-1 runs ran twice."""
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # a, c; b
    nodes(tmp_path / "cams.node-1.toml", tmp_path / "cams.node-2.toml")
    await _add(first + 1, {"id": "porch", "uri": "scene:?seed=8"})
    await _add(first + 1, {"id": "a", "uri": "scene:?seed=1"})  # node-1's camera, a second time
    config.write_text(config.read_text() + '[[streams]]\nid = "shed"\nuri = "scene:?seed=9"\n')
    capsys.readouterr()
    for dry_run in (["--dry-run"], []):
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force", *dry_run]) == 0
        out = capsys.readouterr().out
        assert "node-2 is running and gains shed: it must be restarted to run it" in out
        assert (
            "  warning: node-2 runs porch, which its file lacks (added through its API without ?persist=1): "
            "a restart drops it; add it to cams.toml to keep it\n"
        ) in out
        assert (
            "  warning: node-2 runs a, which its file lacks (added through its API without ?persist=1), and "
            "this split gives it to node-1: on both it runs twice"
        ) in out
        assert "\nwarning: a runs on node-1 and node-2: twice (two event histories, MQTT topics fighting)" in out
        assert "node-1 is running and keeps its cameras" in out
        assert out.count("warning:") == 3, "node-1 runs only what its file has, and no other camera twice"


async def test_a_node_asking_for_tokens_names_its_cameras_to_one_from_the_environment_and_else_guesses_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes behind an entrance others reach ask for tokens, kept in the environment: with its token the
    split names what a node runs; without one that it takes, it says nothing of them: the node tells
    neither its cameras nor their count (its /healthz) to a question without a token it takes."""
    monkeypatch.setenv("SEGCAST_ADMIN_TOKENS", TOKEN)
    monkeypatch.delenv("SEGCAST_VIEWER_TOKENS", raising=False)
    config = _config(tmp_path, 'host = "0.0.0.0"\n')
    first = consecutive_free_ports(1)
    assert main(["split", str(config), "--nodes", "1", "--first-port", str(first)]) == 0
    with _node(tmp_path / "cams.node-1.toml"):  # started with $SEGCAST_ADMIN_TOKENS, its file naming none
        await _add(first, {"id": "porch", "uri": "scene:?seed=8"}, token=TOKEN)
        capsys.readouterr()
        monkeypatch.setenv("SEGCAST_ADMIN_TOKENS", "not-a-token-the-node-takes")
        assert main(["split", str(config), "--nodes", "1", "--first-port", str(first), "--force", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "node-1 is running and keeps its cameras" in out
        assert "porch" not in out and "(its /healthz)" not in out, "neither named nor counted: no guess"
        monkeypatch.setenv("SEGCAST_ADMIN_TOKENS", TOKEN)
        assert main(["split", str(config), "--nodes", "1", "--first-port", str(first), "--force", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "  warning: node-1 runs porch, which its file lacks (added through its API without ?persist=1)" in out
        assert TOKEN not in out
        config.write_text(config.read_text() + '[[streams]]\nid = "porch"\nuri = "scene:?seed=8"\n')
        assert main(["split", str(config), "--nodes", "1", "--first-port", str(first), "--force", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "node-1 is running and keeps its cameras: it runs on as it is; its file changed" in out, "runs porch"
        assert "warning" not in out, "its file has porch now: a restart keeps it"


@pytest.mark.timeout(NODES_TIMEOUT_S)
def test_a_resplit_names_a_running_node_that_refuses_the_token_another_takes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    nodes_with_tokens: Callable[[Mapping[Path, str]], None],
) -> None:
    """node-2 started with other tokens than node-1's: the split said only that node-2 runs on as it is,
    while the All cameras page's one token, and every signed link, was refused there."""
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # a, c; b
    node_1_token, node_2_token = "node-1-token-0123456789", "node-2-token-0123456789"
    nodes_with_tokens({tmp_path / "cams.node-1.toml": node_1_token, tmp_path / "cams.node-2.toml": node_2_token})
    monkeypatch.setenv(ADMIN_TOKENS_ENV, node_1_token)
    capsys.readouterr()
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "\nwarning: node-2 refused the token node-1 took: the nodes of one fleet must share their tokens (the All "
        "cameras page asks for one token for every node, and a signed link is good only on a node with its "
        "token): start every node with the same $SEGCAST_ADMIN_TOKENS / $SEGCAST_VIEWER_TOKENS (or [auth] tokens "
        "in cams.toml, which every node file copies), restarting one node at a time; which cameras node-2 runs, "
        "this split cannot tell until then\n"
    ) in out
    assert out.count("warning:") == 1, "node-1 took it: nothing to say of node-1"
    assert node_1_token not in out and node_2_token not in out


def test_a_node_file_that_cannot_be_read_is_named_with_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Whether its node runs, and which cameras, cannot be told: the split says so rather than taking it
    silently for a node with no camera, whose cameras it deals out again."""
    config = _config(tmp_path)
    first = str(consecutive_free_ports(2))
    assert main(["split", str(config), "--nodes", "2", "--first-port", first]) == 0
    (tmp_path / "cams.node-2.toml").write_text('[server\nport = 1\n[[streams]]\nid = "b"\n')
    capsys.readouterr()
    assert main(["split", str(config), "--nodes", "2", "--first-port", first, "--force", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "segcast: warning: cams.node-2.toml cannot be read (not TOML: " in err
    assert (
        "whether a node started from it is running, and which cameras it runs, this split cannot tell; it deals "
        "the cameras out as if the file held none, and one that node runs would run twice once its new node "
        "starts: if node-2 is running, stop it before starting the nodes\n"
    ) in err


def test_a_camera_no_file_can_hold_is_not_said_to_be_dropped_by_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser's camera or a --source flag's runs in no file and no ?persist=1 saves it: telling the
    user to add it to cams.toml would put a second camera of that id in the file. A camera added
    through the API without saving it is still named."""
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # a, c; b
    node_2 = tmp_path / "cams.node-2.toml"
    said = NodeStreams(3, ("b", "porch", "phone"), never_saved=frozenset({"phone"}))  # as its /api/streams says

    def what_each_runs(running: Iterable[EarlierNode]) -> dict[Path, NodeStreams]:
        return {node.path: said for node in running if node.path == node_2}

    monkeypatch.setattr(running_nodes, "what_each_runs", what_each_runs)
    with _listening(first + 1):  # node-2 runs
        capsys.readouterr()
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force"]) == 0
    out = capsys.readouterr().out
    assert "  warning: node-2 runs porch, which its file lacks (added through its API without ?persist=1)" in out
    assert "phone" not in out


@contextmanager
def _node_taking(token: str) -> Iterator[int]:
    """The port of a stand-in node running cam9: its /healthz says it is healthy to all and its count to
    ``token`` alone, its /api/streams names it only to ``token``."""

    class Node(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's method name
            taken = self.headers.get("Authorization") == f"Bearer {token}"
            if self.path == "/healthz":
                status, body = 200, {"status": "ok", "v": 1, **({"streams": 1} if taken else {})}
            elif taken:
                status, body = 200, {"v": 1, "streams": [{"id": "cam9"}]}
            else:
                status, body = 401, {"error": "a token it takes is needed"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Node, "stand-in-node") as server:
        yield server.server_address[1]


def test_a_node_refusing_the_first_token_is_asked_with_the_next() -> None:
    """A stale token in the node's file (or the environment) comes before the one it takes: the split
    asks with each in turn, rather than giving up on the first refusal and saying it cannot name them."""
    with _node_taking("right") as port:
        said = running_nodes.streams_of("127.0.0.1", port, ("stale-admin", "right"))
    assert said is not None
    assert (said.ids, said.count) == (("cam9",), 1)
