"""A split fleet's day 2, as docs/scaling.md tells it: cams.toml edited and split again, a camera added
through a running node's API, a port taken by another program, an entrance not reloaded, a token rotated.

Real nodes where the behaviour is theirs (a node's save check after a re-split), a real nginx where it is
the entrance's (the map it serves), stand-ins where only what the split says is at stake.
"""

from __future__ import annotations

import asyncio
import shlex
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import aiohttp
import pytest

from server.cli import main
from server.config import load_config
from tests.support.polling import eventually
from tests.support.ports import consecutive_free_ports, free_port
from tests.test_alert_rules import fired, node, promtool_test, rules
from tests.test_deploy import require_nginx
from tests.test_split import (
    NODES_TIMEOUT_S,
    _entrance_commands,
    _files,
    _listening,
    _nginx,
    _node,
    _serving_at,
)
from tests.test_split_writing import _save_through_the_api

CAMERAS = "".join(f'[[streams]]\nid = "{name}"\nuri = "scene:?seed={i}"\n\n' for i, name in enumerate("abc", 1))
ZONE = 'zones = [{ name = "door", points = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]], units = "fraction" }]\n'


def _config(folder: Path) -> Path:
    """cams.toml of three generated cameras (a, b, c), its entrance at a free port."""
    config = folder / "cams.toml"
    config.write_text(f'[server]\nport = {free_port()}\n\n[model]\nname = "bundled"\n\n' + CAMERAS)
    return config


def _split(config: Path, nodes: int, first: int, *more: str) -> int:
    return main(["split", str(config), "--nodes", str(nodes), "--first-port", str(first), *more])


class _NotSegcast(BaseHTTPRequestHandler):
    """Another program's web server: a page for every path."""

    def do_GET(self) -> None:  # http.server's method name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"<html/>")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _another_program(port: int) -> Iterator[str]:
    with _serving_at(port, _NotSegcast) as address:
        yield address


def test_a_camera_changed_in_cams_toml_is_said_as_its_change_not_as_a_lost_save(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """conf = 0.5 and a zone given to camera a in cams.toml: the re-split said "a: its conf, zones saved here
    differ from cams.toml's: lost", though nothing was saved through node-1's API, and never said the change
    itself. A save through the API of another camera in the same file (c's iou) is still named as lost."""
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert _split(config, 2, first) == 0  # a, c; b
    _save_through_the_api(tmp_path / "cams.node-1.toml", "c", iou=0.5)
    config.write_text(
        config.read_text().replace('uri = "scene:?seed=1"\n', f'uri = "scene:?seed=1"\nconf = 0.5\n{ZONE}')
    )
    capsys.readouterr()

    assert _split(config, 2, first, "--force", "--discard-node-changes", "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "    a: conf 0.25 -> 0.5, zones changed" in lines
    assert [line for line in lines if "saved here" in line] == [
        "    c: its iou saved here differ from cams.toml's: lost"
    ]


@pytest.mark.timeout(NODES_TIMEOUT_S)
async def test_a_camera_added_through_a_running_nodes_api_and_to_cams_toml_leaves_its_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/scaling.md: add a camera "without a restart" with ?persist=1 and to cams.toml too. The next split
    rewrote node-2's file (the API appends its camera, cams.toml had it first; its table says from_api) and
    said to restart node-2, whose every ?persist=1 was a 409 until then."""
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert _split(config, 2, first) == 0  # a, c; b
    node_2 = tmp_path / "cams.node-2.toml"
    porch = {"id": "porch", "uri": "scene:?seed=8"}
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{first + 1}") as session:
        with _node(node_2):
            async with session.post("/api/streams?persist=1", json=porch) as response:
                assert response.status == 201, await response.text()
            first_camera = f'[[streams]]\nid = "porch"\nuri = "{porch["uri"]}"\n\n[[streams]]'
            config.write_text(config.read_text().replace("[[streams]]", first_camera, 1))  # first in cams.toml
            saved = node_2.read_bytes()
            capsys.readouterr()

            assert _split(config, 2, first, "--force") == 0
            out = capsys.readouterr().out
            assert node_2.read_bytes() == saved
            assert f"left {node_2} (node-2, 127.0.0.1:{first + 1}): porch, b, as it is" in out
            assert "node-2 is running and keeps its cameras: it runs on as it is\n" in out
            async with session.patch("/api/streams/porch?persist=1", json={"conf": 0.5}) as response:
                assert response.status == 200, await response.text()
    assert load_config(node_2).streams[-1].options.conf == 0.5


def test_another_program_at_a_nodes_port_is_no_running_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A web server at node-2's port was taken for node-2 running: the split said "node-2 is running and keeps
    its cameras", printed no command to start it, and the entrance sent /node-2/ to that program."""
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert _split(config, 2, first) == 0
    before = _files(config)
    with _another_program(first + 1):
        capsys.readouterr()
        for dry_run in (["--dry-run"], []):
            assert _split(config, 2, first, "--force", *dry_run) == 2
            assert capsys.readouterr().err == (
                f"segcast: 127.0.0.1:{first + 1}, node-2's port, is taken by a server that is not segcast: "
                "node-2 cannot listen there, and the entrance would send /node-2/ to it; nothing was written: "
                "stop it, or choose other ports for the nodes with --first-port\n"
            )
    assert _files(config) == before


def test_a_first_split_checks_that_its_nodes_ports_are_free(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    with _another_program(first):
        assert _split(config, 2, first) == 2
    assert capsys.readouterr().err.startswith(
        f"segcast: 127.0.0.1:{first}, node-1's port, is taken by a server that is not segcast:"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cams.toml"]


@pytest.mark.timeout(120)
async def test_an_entrance_not_reloaded_since_its_file_changed_is_told_to_reload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A split whose entrance file is unchanged said "an entrance already running goes on as it is" while the
    running one was started before the last split changed that file: it sent the moved camera's old
    addresses, and its map, to the old node."""
    require_nginx()
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert _split(config, 2, first) == 0  # a, c; b
    start, stop = _entrance_commands(capsys.readouterr().out)
    with _nginx(start, stop), _listening(first):  # node-1 answers the entrance's question before its map
        config.write_text(config.read_text() + '[[streams]]\nid = "d"\nuri = "scene:?seed=4"\n')
        assert _split(config, 2, first, "--force") == 0  # d to node-2: the file changes, the entrance not reloaded
        reload = next(line for line in capsys.readouterr().out.splitlines() if line.endswith(" -s reload"))
        assert _split(config, 2, first, "--force") == 0
        out = capsys.readouterr().out
        assert (
            "the running entrance serves an older map than its file (not reloaded since a split changed it): "
            f"reload it:\n{reload}\n"
        ) in out
        assert "goes on as it is" not in out
        reloading = await asyncio.create_subprocess_exec(*shlex.split(reload))
        assert await reloading.wait() == 0
        await _serves_camera(tomllib.loads(config.read_text())["server"]["port"], "d")

        # The split asks the entrance for its map within a short time-out (which a loaded machine's nginx and
        # node may miss once: it then says only that the file has not changed), and a reloaded nginx's old
        # workers may still answer for a moment with the older map: so it is asked again then.
        async def told_it_serves_the_file() -> str | None:
            assert _split(config, 2, first, "--force") == 0
            out = capsys.readouterr().out
            return out if "the running entrance serves it: it goes on as it is" in out else None

        out = await eventually(told_it_serves_the_file, what="the split to find the reloaded entrance serving its map")
        assert "(its file has not changed, and the running entrance serves it: it goes on as it is)" in out


async def _serves_camera(port: int, stream_id: str) -> None:
    """Return once the entrance at ``port`` names ``stream_id`` in its map: its reloaded workers answer."""
    async with aiohttp.ClientSession() as session:

        async def named() -> bool:
            async with session.get(f"http://127.0.0.1:{port}/fleet.json") as response:
                nodes = (await response.json())["nodes"] if response.status == 200 else []
                return any(stream_id in node["streams"] for node in nodes)

        await eventually(named, what=f"the reloaded entrance to name {stream_id}")


def test_a_node_down_alert_says_that_a_node_refusing_the_scrapes_token_is_down_too(tmp_path: Path) -> None:
    """A node that answers 401 (its tokens rotated, Prometheus' not) is down to Prometheus as a stopped one
    is, and SegcastNodeDown said only "is not answering": a person looked for a stopped node."""
    series = {f"up{node('node-2')}": "0x10"}
    promtool_test(tmp_path, series, [("5m", "SegcastNodeDown", [fired("SegcastNodeDown", "node-2")])])
    description = rules()["SegcastNodeDown"]["annotations"]["description"]
    assert "refuses the scrape's token" in description
    assert "authorization" in description
