"""``segcast split`` again over a running node whose file it leaves as it is: what the node runs is what
it read when it started (or last saved), not what its file says now, and a file changed since refuses its
next save.

A real node where the behaviour is its own (when it read or saved its file, as its ``/healthz`` says); a socket that
accepts connections and what the node says it runs where only the split's words are at stake.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import ExitStack
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server.cli import main
from server.config import StreamConfig
from server.deploy import running_nodes
from server.deploy.running_nodes import NodeStreams
from server.deploy.split import EarlierNode
from tests.support.ports import consecutive_free_ports
from tests.test_split import _listening, _node
from tests.test_split_growth import _config

Start = Callable[..., Awaitable[TestClient]]


def _says(monkeypatch: pytest.MonkeyPatch, said: dict[str, NodeStreams]) -> None:
    """The running nodes say they run ``said``, by node file name (a node not named gives no answer)."""

    def what_each_runs(running: Iterable[EarlierNode]) -> dict[Path, NodeStreams]:
        return {node.path: said[node.path.name] for node in running if node.path.name in said}

    monkeypatch.setattr(running_nodes, "what_each_runs", what_each_runs)


async def test_healthz_says_when_the_config_file_was_last_read_or_saved(start_server: Start, tmp_path: Path) -> None:
    without = await start_server()
    assert (await (await without.get("/healthz")).json())["config_read_at"] is None, "no file, nothing read"

    config = tmp_path / "segcast.toml"
    config.write_text('[[streams]]\nid = "cam"\nuri = "scene:?seed=3"\n')
    before = time.time()
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), config_path=config)
    read_at = (await (await client.get("/healthz")).json())["config_read_at"]
    assert before <= read_at <= time.time()

    # A save through its API: the file is then the node's own, its modification time not after the save.
    assert (await client.patch("/api/streams/cam?persist=1", json={"conf": 0.5})).status == 200
    saved_at = (await (await client.get("/healthz")).json())["config_read_at"]
    assert saved_at > read_at
    assert config.stat().st_mtime <= saved_at


async def test_a_grow_tells_a_running_node_that_has_not_read_its_changed_file_to_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A setting of node-2's camera changed (conf = 0.6), the split rewrote node-2's file and said to
    restart it; not restarted, a grow then left the file as it is (only its header would change) and said
    node-2 "saves its API's changes only to its file as it read it" and "runs on as it is": it ran conf
    0.25 still, and its next ?persist=1 was refused (409)."""
    config = _config(tmp_path)
    first = consecutive_free_ports(3)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # a, c, e; b, d, f
    node_2 = tmp_path / "cams.node-2.toml"
    with _node(node_2):
        config.write_text(config.read_text().replace('uri = "scene:?seed=2"\n', 'uri = "scene:?seed=2"\nconf = 0.6\n'))
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force"]) == 0
        assert "node-2 is running and keeps its cameras: it runs on as it is; its file changed: restart it" in (
            capsys.readouterr().out
        )
        changed = node_2.read_bytes()
        for dry_run in (["--dry-run"], []):
            assert main(["split", str(config), "--nodes", "3", "--first-port", str(first), "--force", *dry_run]) == 0
            out = capsys.readouterr().out
            assert node_2.read_bytes() == changed, "a comment alone is still not written over it"
            assert (
                "node-2 is running and keeps its cameras, but node-2 has not read cams.node-2.toml since it changed "
                "(the file is newer than its last read or save): restart it to run it; until then its ?persist=1 "
                "saves are refused"
            ) in out
            placed = f"{node_2} (node-2, 127.0.0.1:{first + 1}): b, d, f"
            assert f"{placed}, as it is: nothing it runs would change\n" in out
            assert "as it read it" not in out
            assert "runs on as it is" not in out


def test_a_camera_a_running_node_dropped_that_another_runs_is_said_to_run_twice_after_its_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """c, moved from node-1 to node-2 through their APIs without saving, is still in node-1's file: node-1's
    restart runs it on both."""
    config = _config(tmp_path)
    first = consecutive_free_ports(2)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # a, c, e; b, d, f
    _says(
        monkeypatch,
        {"cams.node-1.toml": NodeStreams(2, ("a", "e")), "cams.node-2.toml": NodeStreams(4, ("b", "c", "d", "f"))},
    )
    with ExitStack() as nodes:
        for port in (first, first + 1):
            nodes.enter_context(_listening(port))
        capsys.readouterr()
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "  warning: node-1 does not run c, which its file lists (removed through its API without a save): a restart "
        "of node-1 runs it again (it runs on node-2 now: twice); "
    ) in out
    assert "node-2 does not run" not in out


def test_a_running_nodes_file_with_a_byte_order_mark_is_left_as_it_is_where_only_its_comments_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file saved by an editor that writes a UTF-8 byte order mark runs what the split's would: rewritten,
    its running node's next ?persist=1 is refused."""
    config = _config(tmp_path)
    first = consecutive_free_ports(3)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0
    node_2 = tmp_path / "cams.node-2.toml"
    node_2.write_bytes("\ufeff".encode() + node_2.read_bytes())
    before = node_2.read_bytes()
    _says(monkeypatch, {})
    with _listening(first + 1):
        capsys.readouterr()
        assert main(["split", str(config), "--nodes", "3", "--first-port", str(first), "--force"]) == 0
    assert node_2.read_bytes() == before
    out = capsys.readouterr().out
    assert f"left {node_2} (node-2, 127.0.0.1:{first + 1}): b, d, f, as it is: nothing it runs would change" in out
