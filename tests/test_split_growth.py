"""Growing and shrinking a fleet with ``segcast split --force`` while its nodes run, as docs/scaling.md
tells: what a running node's file must keep, and what the split must say about what moves (MQTT
topics) and what is left behind (a retired node's event history).

Real nodes (``segcast serve`` from the files the split wrote) where the behaviour is theirs: a node's
save check, what it says it runs.
"""

from __future__ import annotations

import shlex
import sqlite3
import tomllib
from pathlib import Path

import aiohttp
import pytest

from server.cli import main
from server.deploy.split import split_config
from server.deploy.split_writing import write_split
from server.events.history.writer import SCHEMA
from tests.support.ports import consecutive_free_ports, free_port
from tests.test_split import _ids, _node

CAMERAS = "".join(f'[[streams]]\nid = "{name}"\nuri = "scene:?seed={i}"\n\n' for i, name in enumerate("abcdef", 1))
MQTT = '[events.mqtt]\nhost = "127.0.0.1"\ntopic_prefix = "site"\n\n'


def _config(folder: Path, tables: str = "") -> Path:
    """cams.toml of six generated cameras (a to f), its entrance at a free port."""
    config = folder / "cams.toml"
    config.write_text(f'[server]\nport = {free_port()}\n\n[model]\nname = "bundled"\n\n{tables}' + CAMERAS)
    return config


async def _delete(port: int, stream_id: str, query: str = "") -> int:
    """The status of ``DELETE /api/streams/<stream_id><query>`` at the node at ``port``."""
    url = f"http://127.0.0.1:{port}/api/streams/{stream_id}{query}"
    async with aiohttp.ClientSession() as session, session.delete(url) as response:
        return response.status


async def test_growing_leaves_a_running_nodes_file_alone_so_it_still_saves_a_camera_moved_away(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 -> 3 nodes rewrote node-2's file for its header alone ("Node 2 of 2" -> "of 3"); node-2's save
    check saw an outside edit, so moving a camera away (docs/scaling.md) stopped it but left it in
    node-2's file (409): it ran on two nodes after node-2's next restart."""
    config = _config(tmp_path)
    first = consecutive_free_ports(3)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # a, c, e; b, d, f
    node_2 = tmp_path / "cams.node-2.toml"
    before = node_2.read_bytes()
    with _node(node_2):
        capsys.readouterr()
        assert main(["split", str(config), "--nodes", "3", "--first-port", str(first), "--force"]) == 0
        out = capsys.readouterr().out
        assert node_2.read_bytes() == before
        assert f"left {node_2} (node-2, 127.0.0.1:{first + 1}): b, d, f, as it is: nothing it runs would change" in out
        assert "node-2 is running and keeps its cameras: it runs on as it is\n" in out
        assert "Node 1 of 3" in (tmp_path / "cams.node-1.toml").read_text(), "a stopped node's file is written"

        assert await _delete(first + 1, "f", "?persist=1") == 204
        assert _ids(node_2) == ["b", "d"]

        # node-2 wrote its file itself: a split after that does not take it for a file node-2 has not read.
        assert main(["split", str(config), "--nodes", "3", "--first-port", str(first), "--force", "--dry-run"]) == 0
        assert "has not read" not in capsys.readouterr().out


async def test_a_resplit_names_a_camera_a_running_node_no_longer_runs_that_its_file_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A camera removed through a node's API without a save stays in its file: the node's next restart
    runs it again, on two nodes where it was moved. The split said nothing of it."""
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # a, c, e; b, d, f
    with _node(tmp_path / "cams.node-2.toml"):
        assert await _delete(first + 1, "d") == 204  # not saved: cams.node-2.toml still lists d
        capsys.readouterr()
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force", "--dry-run"]) == 0
        out = capsys.readouterr().out
    assert (
        "  warning: node-2 does not run d, which its file lists (removed through its API without a save): a "
        "restart of node-2 runs it again; to keep it off node-2, remove its [[streams]] table from "
        "cams.node-2.toml (and from cams.toml if it is retired), then restart node-2"
    ) in out
    assert out.count("warning:") == 1, "b and f run as the file says"


def test_a_split_with_mqtt_says_where_the_topics_move_and_that_entity_ids_stay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Home Assistant automations on a camera's event topics stopped firing after a split: each node
    publishes under its own prefix, and the split did not say so."""
    config = _config(tmp_path, MQTT)
    assert main(["split", str(config), "--nodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "MQTT topics move: each node publishes under its own prefix, site/<camera>/... becomes " in out
    assert "site/node-N/<camera>/..." in out
    assert "point automations on site/<camera>/events/<type> at site/+/<camera>/events/<type>" in out
    assert 'Home Assistant\'s devices and entity ids stay (every node has discovery_id = "site")' in out
    assert (
        "The box's retained topics stay on the broker as it left them (site/status offline, site/server, and each "
        "camera's counts, availability and snapshots), which no node publishes again: once the nodes run, list them "
        "with mosquitto_sub -v -t 'site/#' --retained-only and clear each of the box's (not under site/node-N/) "
        "with an empty retained message (mosquitto_pub -r -n -t site/status)"
    ) in out
    node_2 = tomllib.loads((tmp_path / "cams.node-2.toml").read_text())["events"]["mqtt"]
    assert (node_2["topic_prefix"], node_2["discovery_id"]) == ("site/node-2", "site")

    # Again into two: no camera changes node, no topic moves.
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    assert "MQTT" not in capsys.readouterr().out
    # Into one: node-2's cameras move to node-1, and only they are named.
    retired = [stream["id"] for stream in tomllib.loads((tmp_path / "cams.node-2.toml").read_text())["streams"]]
    assert main(["split", str(config), "--nodes", "1", "--force"]) == 0
    moved = [line for line in capsys.readouterr().out.splitlines() if line.startswith("MQTT topics move")]
    assert moved == [
        f"MQTT topics move for {', '.join(retired)}: to site/node-N/<camera>/... of the node now "
        "running each (automations on site/+/<camera>/events/<type> follow them)"
    ]

    _config(tmp_path)
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    out = capsys.readouterr().out
    assert "MQTT" not in out and "topic" not in out


def test_a_shrinking_split_names_the_retired_nodes_event_history_and_how_to_read_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retiring node-3 left its events in segcast-events.node-3.db, which no node reads, and the split
    did not say so. Named only where there is such a file: a node never started kept none."""
    config = _config(tmp_path, "[events.history]\n\n")
    assert main(["split", str(config), "--nodes", "3"]) == 0  # node-3: c, f
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    out = capsys.readouterr().out
    assert "node-1 goes on in the event history" in out
    assert "node-3's event history" not in out

    for node_file in tmp_path.glob("cams.node-*.toml"):  # every node stopped: dealt out anew
        node_file.unlink()
    assert main(["split", str(config), "--nodes", "3", "--force"]) == 0  # node-3: c, f
    history = tmp_path / "segcast-events.node-3.db"
    with sqlite3.connect(history) as database:  # node-3 ran, and kept an event
        database.executescript(SCHEMA)
        database.execute("INSERT INTO events (time, stream, type, data) VALUES (1767225600, 'c', 'line_cross', '{}')")
    database.close()
    capsys.readouterr()
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    out = capsys.readouterr().out
    assert (
        f"node-3's event history {history} stays as it is, and no node reads it now (no /api/events reaches it): "
        "the events, with their snapshots, of c, f until node-3 stopped; read them with:\n"
    ) in out
    command = shlex.split(out.split("read them with:\n")[1].splitlines()[0])
    assert command[:2] == ["sqlite3", str(history)]
    with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as database:
        assert database.execute(command[2]).fetchall() == [(1, 1767225600.0, "c", "line_cross", "{}")]
    database.close()


@pytest.mark.parametrize(("earlier", "nodes", "retired"), [(3, 2, ["node-3"]), (2, 2, [])])
def test_the_history_of_a_node_the_split_keeps_is_never_named_retired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], earlier: int, nodes: int, retired: list[str]
) -> None:
    """Every node of the earlier split kept a history file: only those of the nodes the split removes
    are left unread; a kept node reads its own on, and telling the user otherwise sends them to sqlite3
    for events its /api/events still serves."""
    config = _config(tmp_path, "[events.history]\n\n")
    earlier_split = split_config(config, earlier)
    write_split(earlier_split, overwrite=False)
    for node in earlier_split.nodes:  # every node ran, and kept its history
        assert node.history is not None
        (tmp_path / node.history).touch()

    assert [history.node for history in split_config(config, nodes).retired] == retired
    capsys.readouterr()
    assert main(["split", str(config), "--nodes", str(nodes), "--force"]) == 0
    assert capsys.readouterr().out.count("no node reads it now") == len(retired)


def test_growing_with_rebalance_gives_the_new_node_cameras_moving_as_few_as_it_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 -> 4 nodes kept every camera where it was, the new nodes given none ("node-3 gets no cameras"),
    and the only way to even them out was moving cameras one by one through the API. --rebalance moves the
    fullest nodes' last cameras to the emptiest until no two differ by more than one, and says why each
    went; without it, the split is as before."""
    config = _config(tmp_path)
    assert main(["split", str(config), "--nodes", "2"]) == 0  # a, c, e; b, d, f
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "4", "--force", "--dry-run"]) == 0
    assert "node-3, node-4 get no cameras" in capsys.readouterr().err

    assert main(["split", str(config), "--nodes", "4", "--force", "--rebalance"]) == 0
    out = capsys.readouterr().out.splitlines()
    nodes = [tmp_path / f"cams.node-{i}.toml" for i in range(1, 5)]
    assert [_ids(node) for node in nodes] == [["a", "c"], ["b", "d"], ["e"], ["f"]]
    assert "  cams.node-1.toml: loses e (to node-3)" in out
    assert "  cams.node-3.toml (new): gains e (from node-1, --rebalance)" in out
    assert "  cams.node-4.toml (new): gains f (from node-2, --rebalance)" in out

    assert main(["split", str(config), "--nodes", "4", "--force", "--rebalance"]) == 0  # even already: no move
    assert [_ids(node) for node in nodes] == [["a", "c"], ["b", "d"], ["e"], ["f"]]
