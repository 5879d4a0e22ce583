"""``segcast split``: one config file dealt out to node files that load, and an entrance in front of them.

The entrance itself is run in a real nginx by every entrance test of tests/test_deploy.py (the
``split`` parameter); here, what the node files say, the refusals, and two real nodes started from
the files it writes, reached through that entrance.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import aiohttp
import pytest

from server.app import create_app
from server.cli import main
from server.config import load_config
from server.deploy import running_nodes
from server.deploy import split as split_module
from server.deploy.node_files import toml_document
from server.deploy.split import NodeFile, Split, SplitError, split_config
from server.deploy.split_writing import write_split
from server.http.access.tokens import AuthConfigError
from server.persist import write_config
from tests.support.certificates import self_signed
from tests.support.polling import eventually
from tests.support.ports import consecutive_free_ports, free_port
from tests.support.segcast_process import START_TIMEOUT_S, STOP_TIMEOUT_S, stop_process
from tests.test_deploy import require_nginx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "an-admin-token-of-the-box"
#: The timeout of a test that starts its nodes with `nodes`: their starts overlap, so together they take about
#: one start (importing torch and loading the model: `START_TIMEOUT_S` on a busy machine), their stops
#: `STOP_TIMEOUT_S` at most, and 30 s the rest. Started one after the other, two outran the 120 s default.
NODES_TIMEOUT_S = START_TIMEOUT_S + STOP_TIMEOUT_S + 30

CONFIG = """\
# the user's own comment
[server]
port = 8090
max_viewers = 200
jpeg_quality = 70

[model]
name = "weights/my model.pt"

[stream_defaults]
conf = 0.3
tracker = "bytetrack"

[auth]
admin_tokens = ["an-admin-token-of-the-box"]

[events.history]

[events.mqtt]
host = "127.0.0.1"
client_id = "box"

[[streams]]
id = "door"
uri = "clips/door.mp4"
lines = [{ name = "in", points = [[0.5, 0.1], [0.5, 0.9]], units = "fraction" }]

[[streams]]
id = "yard"
uri = "scene:?seed=2"
tracker_settings = { track_buffer = 60 }

[[streams]]
id = "gate"
uri = "scene:?seed=3"
conf = 0.5
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "my model.pt").write_bytes(b"not read by a split")
    path = tmp_path / "cams.toml"
    path.write_text(CONFIG)
    return path


def test_each_node_gets_every_nth_camera_with_the_settings_it_had(config: Path) -> None:
    original = load_config(config)
    split = split_config(config, 2)
    write_split(split, overwrite=False)

    nodes = [load_config(node.path) for node in split.nodes]
    assert [[s.stream_id for s in node.streams] for node in nodes] == [["door", "gate"], ["yard"]]
    streams = {s.stream_id: s for s in original.streams}
    for node in nodes:
        for stream in node.streams:  # uri (a relative path, from the same folder), lines, conf, tracker settings
            assert stream == streams[stream.stream_id]
        assert node.model == original.model  # a relative path again, as the files lie side by side
        assert node.stream_defaults == original.stream_defaults
        assert node.admin_tokens == original.admin_tokens
        assert node.jpeg_quality == 70
    assert [node.path.name for node in split.nodes] == ["cams.node-1.toml", "cams.node-2.toml"]
    assert split.entrance_path.name == "cams.nginx.conf"


def test_what_must_differ_between_nodes_on_one_machine_does(config: Path) -> None:
    split = split_config(config, 3)
    nodes = [tomllib.loads(node.text) for node in split.nodes]
    # On 127.0.0.1 at ports after the file's, every viewer allowed in from the entrance's one address.
    assert [(n["server"]["host"], n["server"]["port"]) for n in nodes] == [("127.0.0.1", p) for p in (8091, 8092, 8093)]
    assert {n["server"]["max_viewers_per_address"] for n in nodes} == {200}
    # A history each (node 1 goes on in the box's own), MQTT topics and client ids of their own.
    assert [n["events"]["history"]["path"] for n in nodes] == [
        "segcast-events.db",
        "segcast-events.node-2.db",
        "segcast-events.node-3.db",
    ]
    assert [n["events"]["mqtt"]["topic_prefix"] for n in nodes] == [f"segcast/node-{i}" for i in (1, 2, 3)]
    assert [n["events"]["mqtt"]["client_id"] for n in nodes] == [f"box-node-{i}" for i in (1, 2, 3)]
    # ... and the box's Home Assistant devices, wherever a camera runs.
    assert [n["events"]["mqtt"]["discovery_id"] for n in nodes] == ["segcast"] * 3
    assert "127.0.0.1:8093" in split.entrance_text and "listen 127.0.0.1:8090;" in split.entrance_text


def test_tls_moves_to_the_entrance(config: Path) -> None:
    self_signed(config.parent)  # cert.pem and key.pem, loaded as segcast serve would load them
    config.write_text(CONFIG.replace("[model]", 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n\n[model]'))
    split = split_config(config, 2)
    assert all("tls_cert" not in tomllib.loads(node.text)["server"] for node in split.nodes)
    assert "listen 127.0.0.1:8090 ssl;" in split.entrance_text
    assert f'ssl_certificate "{config.parent / "cert.pem"}";' in split.entrance_text
    assert f'ssl_certificate_key "{config.parent / "key.pem"}";' in split.entrance_text


def test_a_toml_document_reads_back_as_it_was() -> None:
    document = {
        "auth": "off",
        "server": {"port": 8080, "embed_origins": ["https://a.example"], "save_config": True},
        "events": {"history": {}, "webhooks": [{"url": "http://h/1", "secret": 'q"uo\\te\n'}, {"url": "http://h/2"}]},
        "streams": [
            {
                "id": "a",
                "conf": 0.25,
                "tracker_settings": {"track_buffer": 60},
                "zones": [{"name": "zöne 🙂", "points": [[1, 2.5], [3, 4], [5, 6]]}],
            },
            {"id": "b", "options": {"imgsz": 320}},
        ],
        "odd key": {"x.y": 1},
    }
    assert tomllib.loads(toml_document(document)) == document


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--nodes", "4"], "--nodes 4: more nodes than cameras ([[streams]]: 3 in cams.toml)"),
        (["--nodes", "0"], "--nodes 0: expected 1 to 64"),
        (
            ["--nodes", "2", "--first-port", "8089"],
            "--first-port 8089: node ports 8089-8090 include the entrance's 8090",
        ),
        (
            ["--nodes", "2", "--first-port", "65535"],
            "--first-port 65535: the nodes' ports 65535-65536 must lie in 1-65535",
        ),
    ],
)
def test_a_split_that_cannot_be_made_is_one_line_and_writes_nothing(
    config: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert main(["split", str(config), *arguments]) == 2
    assert capsys.readouterr().err == f"segcast: {message}\n"
    assert sorted(p.name for p in config.parent.glob("cams.*")) == ["cams.toml"]


def test_the_config_files_own_errors_come_first(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config.write_text(CONFIG.replace('id = "yard"', 'id = "door"'))
    assert main(["split", str(config), "--nodes", "2"]) == 2
    assert "door" in capsys.readouterr().err
    config.write_text("[server]\nport = 8090\n")
    assert main(["split", str(config), "--nodes", "2"]) == 2
    assert capsys.readouterr().err == "segcast: cams.toml has no cameras to split: give each one a [[streams]] table\n"


@pytest.mark.parametrize(("file", "reason"), [("nosuch.toml", errno.ENOENT), (".", errno.EISDIR)])
def test_a_file_it_cannot_read_is_named_as_it_was_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, file: str, reason: int
) -> None:
    """split takes FILE, no --config: "--config nosuch.toml: cannot read it" named a flag it does not have."""
    monkeypatch.chdir(tmp_path)
    assert main(["split", file, "--nodes", "2"]) == 2
    assert capsys.readouterr().err == f"segcast: {file}: cannot read it ({os.strerror(reason)})\n"


def test_an_entrance_beyond_this_machine_needs_tokens_as_a_node_would(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEGCAST_ADMIN_TOKENS", raising=False)
    monkeypatch.delenv("SEGCAST_VIEWER_TOKENS", raising=False)
    open_to_all = CONFIG.replace('[auth]\nadmin_tokens = ["an-admin-token-of-the-box"]\n', "")
    config.write_text(open_to_all.replace("port = 8090", 'host = "0.0.0.0"\nport = 8090'))
    assert main(["split", str(config), "--nodes", "2"]) == 2
    assert "listening on 0.0.0.0, beyond this machine, needs access tokens" in capsys.readouterr().err
    assert not list(config.parent.glob("cams.node-*"))

    monkeypatch.setenv("SEGCAST_ADMIN_TOKENS", TOKEN)  # tokens the nodes will be started with
    assert main(["split", str(config), "--nodes", "2"]) == 0
    assert "listen 0.0.0.0:8090;" in (config.parent / "cams.nginx.conf").read_text()


def test_node_files_are_as_private_as_the_file_whose_tokens_they_copy(config: Path) -> None:
    config.chmod(0o600)
    split = split_config(config, 2)
    write_split(split, overwrite=False)
    assert [stat.S_IMODE(node.path.stat().st_mode) for node in split.nodes] == [0o600, 0o600]
    assert TOKEN in split.nodes[0].path.read_text()


def test_a_folder_it_cannot_write_to_is_one_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (config.parent / "cams.node-1.toml").mkdir()  # in the way even for root, unlike a read-only folder
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 2
    assert capsys.readouterr().err.startswith(f"segcast: cannot write {config.parent / 'cams.node-1.toml'}: ")


def test_nodes_behind_an_entrance_others_reach_refuse_to_start_without_tokens(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens kept only in the environment and not exported for a node: behind nginx every request
    comes from 127.0.0.1, so that node would have let in everyone the entrance lets in."""
    monkeypatch.setenv("SEGCAST_ADMIN_TOKENS", TOKEN)
    open_file = CONFIG.replace('[auth]\nadmin_tokens = ["an-admin-token-of-the-box"]\n', "")
    config.write_text(open_file.replace("port = 8090", 'host = "0.0.0.0"\nport = 8090'))
    split = split_config(config, 2)
    write_split(split, overwrite=False)
    node = load_config(split.nodes[0].path)
    assert node.auth_required and node.host == "127.0.0.1"
    monkeypatch.delenv("SEGCAST_ADMIN_TOKENS")
    with pytest.raises(AuthConfigError, match=r"auth\.required = true: this server needs access tokens"):
        create_app(node)
    monkeypatch.setenv("SEGCAST_ADMIN_TOKENS", TOKEN)
    create_app(node)  # with them it starts
    write_config(node, list(node.streams))  # a save through its API keeps the requirement
    assert load_config(split.nodes[0].path).auth_required

    config.write_text(open_file)  # an entrance on this machine only: nodes as a single one would be
    assert not any(load_config(n.path).auth_required for n in write_forced(split_config(config, 2)))


def test_a_node_file_saved_through_the_api_keeps_the_splits_header(config: Path) -> None:
    """Which node the file is, of which split and entrance, outlives a save (``?persist=1``), once."""
    split = split_config(config, 2)
    write_split(split, overwrite=False)
    path = split.nodes[1].path
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("# Node 2 of 2 split from cams.toml by `segcast split`")
    node = load_config(path)
    write_config(node, list(node.streams))
    write_config(load_config(path), [])  # a second save: its camera removed
    saved = path.read_text()
    assert saved.startswith(header + "\n# Written by segcast after a change through its API.\n\n[server]\n")
    assert saved.count("# Written by segcast") == 1
    assert load_config(path).streams == ()


def write_forced(split: Split) -> tuple[NodeFile, ...]:
    write_split(split, overwrite=True)
    return split.nodes


def test_auth_off_is_refused_for_an_entrance_beyond_this_machine(config: Path) -> None:
    """Its nodes, open on 127.0.0.1, would answer only to this machine's own names: 403 for everyone."""
    open_file = CONFIG.replace('[auth]\nadmin_tokens = ["an-admin-token-of-the-box"]\n', "")
    config.write_text('auth = "off"\n' + open_file.replace("port = 8090", 'host = "0.0.0.0"\nport = 8090'))
    with pytest.raises(SplitError, match=r'auth = "off" and listens on 0\.0\.0\.0'):
        split_config(config, 2)


@pytest.mark.parametrize(
    ("entrance_port", "node_ports", "entrance_as_root"),
    [(443, [8081, 8082], True), (1023, [8081, 8082], True), (1024, [1025, 1026], False)],
)
def test_behind_a_privileged_port_the_nodes_do_not_need_root(
    config: Path, entrance_port: int, node_ports: list[int], entrance_as_root: bool
) -> None:
    """Only ports under 1024 need root: the entrance is started with sudo there and the nodes go from
    8081; from 1024 up neither needs it, and the nodes go on from the entrance's port."""
    config.write_text(CONFIG.replace("port = 8090", f"port = {entrance_port}"))
    split = split_config(config, 2)
    assert [node.port for node in split.nodes] == node_ports
    assert (split.entrance_command()[0] == "sudo") is entrance_as_root


def test_more_nodes_than_one_machine_takes_is_refused_however_many_cameras(tmp_path: Path) -> None:
    """--nodes 65 is a typing error (`MAX_NODES`: four nodes carried 64 cameras on an H200), refused even
    where the file has a camera for each node."""
    config = tmp_path / "cams.toml"
    cameras = "".join(f'[[streams]]\nid = "c{i}"\nuri = "scene:?seed={i}"\n\n' for i in range(65))
    config.write_text(f"[server]\nport = 8090\n\n{cameras}")
    with pytest.raises(SplitError, match=r"\A--nodes 65: expected 1 to 64\Z"):
        split_config(config, 65)


def test_forced_split_into_fewer_nodes_removes_the_files_of_the_nodes_gone(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["split", str(config), "--nodes", "3"]) == 0
    keep = config.parent / "cams.node-backup.toml"
    keep.write_text("# not a node file of the split\n")
    assert main(["split", str(config), "--nodes", "2"]) == 2
    assert "removes the files of nodes beyond the new number" in capsys.readouterr().err
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    assert not (config.parent / "cams.node-3.toml").exists(), "its camera would run twice"
    assert keep.exists()


def test_a_folder_nginx_cannot_name_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "$HOME"
    folder.mkdir()
    (folder / "cams.toml").write_text('[[streams]]\nid = "a"\nuri = "scene:"\n')
    with pytest.raises(SplitError, match="nginx cannot take a path with '\\$' in it"):
        split_config(folder / "cams.toml", 1)


def test_files_already_there_are_kept_unless_forced(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split", str(config), "--nodes", "2"]) == 0
    node = config.parent / "cams.node-2.toml"
    node.write_text(node.read_text() + "# saved by the node\n")
    assert main(["split", str(config), "--nodes", "2"]) == 2
    refused = capsys.readouterr().err
    for name in ("cams.node-1.toml", "cams.node-2.toml", "cams.nginx.conf"):  # every one, not the first
        assert str(config.parent / name) in refused
    assert "are there already" in refused
    assert node.read_text().endswith("# saved by the node\n")
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    assert not node.read_text().endswith("# saved by the node\n")


def test_the_home_assistant_id_is_the_files_own_prefix_unless_it_names_one(config: Path) -> None:
    """A camera keeps its Home Assistant device across a split and a move between nodes."""
    config.write_text(CONFIG.replace('client_id = "box"', 'client_id = "box"\ntopic_prefix = "site/a"'))
    nodes = [tomllib.loads(node.text)["events"]["mqtt"] for node in split_config(config, 2).nodes]
    assert [(n["topic_prefix"], n["discovery_id"]) for n in nodes] == [
        ("site/a/node-1", "site_a"),
        ("site/a/node-2", "site_a"),
    ]
    config.write_text(CONFIG.replace('client_id = "box"', 'client_id = "box"\ndiscovery_id = "my_home"'))
    assert {tomllib.loads(node.text)["events"]["mqtt"]["discovery_id"] for node in split_config(config, 2).nodes} == {
        "my_home"
    }


def test_the_split_says_node_1_goes_on_in_the_boxs_event_history(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client polling ``after=<last id>`` finds the ids going on in node 1's file, not a new one from 1."""
    assert main(["split", str(config), "--nodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "node-1 goes on in the event history segcast-events.db (its event ids continue" in out
    assert "; new ones for node-2, node-3" in out
    assert load_config(config.parent / "cams.node-1.toml").events.history == load_config(config).events.history


def test_a_resplit_is_refused_while_a_node_it_takes_cameras_from_answers(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running node keeps its cameras in memory: its file rewritten, it would still run those the new
    split gives another node (or drops), and they would run twice; and it would go on at its old port."""
    first = consecutive_free_ports(3)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # door, gate; yard
    before = _files(config)
    with _listening(first) as node_1, _listening(first + 1) as node_2:  # both nodes, at their addresses
        capsys.readouterr()
        at_1, at_2 = f"cams.node-1.toml at {node_1}", f"cams.node-2.toml at {node_2}"
        refusals = [
            (["--nodes", "1", "--first-port", str(first)], f"{at_2}, which is removed"),
            (["--nodes", "2", "--first-port", str(first + 1)], f"{at_1}, which moves to port {first + 1}"),
        ]
        for arguments, named in refusals:
            assert main(["split", str(config), *arguments, "--force"]) == 2
            err = capsys.readouterr().err
            assert f"a node of the earlier split is running ({named}" in err
            assert "would run twice" in err and "stop the nodes first" in err
        config.write_text(CONFIG.split('[[streams]]\nid = "gate"')[0])  # gate retired from cams.toml
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force"]) == 2
        assert f"is running ({at_1}, which loses gate):" in capsys.readouterr().err
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force", "--dry-run"]) == 2
        assert _files(config) == before, "nothing written"
    assert main(["split", str(config), "--nodes", "1", "--first-port", str(first), "--force"]) == 0


def test_a_running_node_is_told_to_restart_only_where_what_it_runs_changed(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Growing from 2 nodes to 3 changes node-1's header ("Node 1 of 2" -> "of 3") and nothing it runs:
    it was told to restart (its cameras down for nothing); a setting of its own changed still asks it."""
    monkeypatch.setattr(running_nodes, "HEALTH_PROBE_S", 0.2)
    first = consecutive_free_ports(3)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # door, gate; yard
    node_1 = config.parent / "cams.node-1.toml"
    with _listening(first):
        capsys.readouterr()
        assert main(["split", str(config), "--nodes", "3", "--first-port", str(first), "--force"]) == 0
        out = capsys.readouterr().out
        assert "Node 1 of 2" in node_1.read_text(), "left as it is: node-1 runs, and only its header would change"
        assert "node-1 is running and keeps its cameras: it runs on as it is\n" in out
        assert "restart" not in out.split("node-1 is running")[1].split("\n\n")[0]
        config.write_text(CONFIG.replace("jpeg_quality = 70", "jpeg_quality = 60"))
        assert main(["split", str(config), "--nodes", "3", "--first-port", str(first), "--force"]) == 0
        out = capsys.readouterr().out
        assert "node-1 is running and keeps its cameras: it runs on as it is; its file changed: restart it" in out


def test_a_shrinking_split_refuses_to_remove_a_running_node_without_cameras_saying_why(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running node-3 that holds no camera was refused for running cameras another node is given."""
    first = consecutive_free_ports(3)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0  # door, gate; yard
    assert main(["split", str(config), "--nodes", "3", "--first-port", str(first), "--force"]) == 0  # node-3: none
    assert _ids(config.parent / "cams.node-3.toml") == []
    with _listening(first + 2) as node_3:
        capsys.readouterr()
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force"]) == 2
        err = capsys.readouterr().err
    assert f"(cams.node-3.toml at {node_3}, which is removed): its file gives it no cameras, but it would run on" in err
    assert "stop it first" in err
    assert "running cameras this split gives another node" not in err


def test_a_resplit_that_only_gives_running_nodes_cameras_goes_on_and_says_which_to_restart(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a camera stops no node: the one that gains it is restarted, one node at a time; one that
    keeps its cameras runs on; a node that does not answer may lose cameras. A node that accepts
    connections but gives no answer in time is not asked what it runs: nothing is said of it."""
    monkeypatch.setattr(running_nodes, "HEALTH_PROBE_S", 0.2)
    first = consecutive_free_ports(3)
    assert main(["split", str(config), "--nodes", "3", "--first-port", str(first)]) == 0  # door; yard; gate
    config.write_text(CONFIG + '\n[[streams]]\nid = "shed"\nuri = "scene:?seed=9"\n')
    node_3 = config.parent / "cams.node-3.toml"
    with _accepting(first), _accepting(first + 1):  # nodes 1 and 2 run, too busy to answer; node 3 is stopped
        capsys.readouterr()
        assert main(["split", str(config), "--nodes", "2", "--first-port", str(first), "--force"]) == 0
        out = capsys.readouterr().out
    # In cams.toml's order, each to the node with the fewest cameras then, the lowest of those tied.
    assert "cams.node-1.toml: gains gate (from node-3, removed)" in out
    assert "cams.node-2.toml: gains shed (in no node's file)" in out
    assert [_ids(config.parent / f"cams.node-{i}.toml") for i in (1, 2)] == [["door", "gate"], ["yard", "shed"]]
    assert not node_3.exists()
    for node, gained in (("node-1", "gate"), ("node-2", "shed")):
        restart = f"{node} is running and gains {gained}: it must be restarted to run it (one node at a time"
        assert restart in out
        command = shlex.split(out.split(restart)[1].splitlines()[1])
        assert command == ["segcast", "serve", "--config", str(config.parent / f"cams.{node}.toml")]
    assert "Start each node" not in out, "none is stopped"
    assert "reload it: it must, to reach the nodes as they are now (nodes: 3 before, 2 now):" in out
    assert "warning" not in out


def test_a_resplit_keeps_each_camera_on_the_node_whose_file_has_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A camera inserted in the middle of cams.toml moves no other camera (each would lose its history
    and MQTT topics there); one moved through a node's API stays where it was moved."""
    assert main(["split", str(config), "--nodes", "2"]) == 0  # node-1: door, gate; node-2: yard
    node_1, node_2 = config.parent / "cams.node-1.toml", config.parent / "cams.node-2.toml"
    one, two = tomllib.loads(node_1.read_text()), tomllib.loads(node_2.read_text())
    two["streams"].append(one["streams"].pop())  # gate moved to node 2 through the API, ?persist=1
    node_1.write_text(toml_document(one))
    node_2.write_text(toml_document(two))
    inserted = '[[streams]]\nid = "porch"\nuri = "scene:?seed=8"\n\n[[streams]]\nid = "door"'
    config.write_text(CONFIG.replace('[[streams]]\nid = "door"', inserted))
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [_ids(path) for path in (node_1, node_2)] == [["porch", "door"], ["yard", "gate"]]
    assert out[1:3] == ["  cams.node-1.toml: gains porch (in no node's file)", "  cams.node-2.toml: the same cameras"]


def test_a_forced_resplit_first_says_what_each_file_it_replaces_loses(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cameras moved or added through a node's API, and settings saved with ?persist=1, are undone by
    the source file: the split says so before it writes, and how to give a running entrance the new
    config (starting a second one fails: its address is taken)."""
    assert main(["split", str(config), "--nodes", "2"]) == 0  # node-1: door, gate; node-2: yard
    node_1, node_2 = config.parent / "cams.node-1.toml", config.parent / "cams.node-2.toml"
    one, two = tomllib.loads(node_1.read_text()), tomllib.loads(node_2.read_text())
    gate = one["streams"].pop()  # gate moved to node 2 ...
    two["streams"][0]["conf"] = 0.6  # ... yard's confidence saved there ...
    two["streams"] += [gate, {"id": "shed", "uri": "scene:?seed=9"}]  # ... and a camera added there
    node_1.write_text(toml_document(one))
    node_2.write_text(toml_document(two))
    capsys.readouterr()

    assert (
        main(["split", str(config), "--nodes", "3", "--force", "--discard-node-changes"]) == 0
    )  # door; yard, gate; none
    printed = capsys.readouterr()
    assert "segcast: warning: node-3 gets no cameras: a new split keeps each camera on the node" in printed.err
    out = printed.out.splitlines()
    wrote = next(i for i, line in enumerate(out) if line.startswith("wrote "))
    assert out[:wrote] == [
        "replacing the earlier split's node files; what changes in each (cams.toml wins; a camera stays on the "
        "node that has it, any other goes to the node with the fewest):",
        "  cams.node-1.toml: the same cameras",
        "  cams.node-2.toml: loses shed (not in cams.toml: removed there, or added through this node's API)",
        "    yard: its conf saved here differ from cams.toml's: lost",
        "  cams.node-3.toml (new): no cameras",
    ]
    reload = out.index(
        "or, if the earlier split's entrance is running (a second start fails: Address already in use), reload it: "
        "it must, to reach the nodes as they are now (nodes: 2 before, 3 now):"
    )
    start, command = shlex.split(out[reload - 1]), shlex.split(out[reload + 1])
    assert command == [*start, "-s", "reload"]


def test_a_dry_run_says_where_each_camera_goes_and_writes_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run: the placement and what changes in each file, as the split would say it; its status is
    the refusal's where the split would be refused."""
    assert main(["split", str(config), "--nodes", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        f"would write {config.parent / 'cams.node-1.toml'} (node-1, 127.0.0.1:8091): door, gate",
        f"would write {config.parent / 'cams.node-2.toml'} (node-2, 127.0.0.1:8092): yard",
    ]
    assert sorted(p.name for p in config.parent.glob("cams.*")) == ["cams.toml"]

    assert main(["split", str(config), "--nodes", "2"]) == 0
    before = _files(config)
    config.write_text(CONFIG + '\n[[streams]]\nid = "shed"\nuri = "scene:?seed=9"\n')
    capsys.readouterr()
    assert main(["split", str(config), "--nodes", "2", "--dry-run"]) == 2, "refused without --force, as a split"
    assert "are there already" in capsys.readouterr().err
    assert main(["split", str(config), "--nodes", "2", "--force", "--dry-run"]) == 0
    assert "  cams.node-2.toml: gains shed (in no node's file)" in capsys.readouterr().out.splitlines()
    assert _files(config) == before


def test_splitting_a_node_file_warns_of_nested_names(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split", str(config), "--nodes", "2"]) == 0
    capsys.readouterr()
    assert main(["split", str(config.parent / "cams.node-2.toml"), "--nodes", "1"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("segcast: warning: cams.node-2.toml looks like a node file of an earlier split")
    assert "'segcast/node-2'" in err and "split the original file instead" in err
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_split_is_refused_while_segcast_itself_runs_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The single box, still running from cams.toml at its address: the nodes started as printed would
    run its cameras a second time, node 1 writing into the box's history file as the box does."""
    config = _box_config(tmp_path)
    with _node(config):
        assert main(["split", str(config), "--nodes", "2"]) == 2
        port = tomllib.loads(config.read_text())["server"]["port"]
        err = capsys.readouterr().err
        assert err.startswith(f"segcast: segcast is running at cams.toml's own address (127.0.0.1:{port})")
        assert "stop it first" in err
        assert sorted(p.name for p in tmp_path.glob("cams.*")) == ["cams.toml"]


async def test_the_entrance_of_an_earlier_split_at_the_files_address_is_not_taken_for_segcast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a split the entrance answers at cams.toml's address: a split again is not refused for it."""
    require_nginx()
    config = _box_config(tmp_path)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(consecutive_free_ports(2))]) == 0
    start, stop = _entrance_commands(capsys.readouterr().out)
    port = tomllib.loads(config.read_text())["server"]["port"]
    with _nginx(start, stop):  # as printed
        await _entrance_answers(f"http://127.0.0.1:{port}/")
        assert main(["split", str(config), "--nodes", "2", "--force"]) == 0, capsys.readouterr().err
    assert (tmp_path / "cams.nginx" / "access.log").read_text().count("GET /healthz") == 2, "it was asked"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (None, "something accepts connections but gives no answer within 0.2 s"),  # a box too busy to answer
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n<html/>\r\n", "a server that is not segcast"),
    ],
)
def test_a_split_is_refused_while_anything_but_the_entrance_answers_at_the_files_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, answer: bytes | None, said: str
) -> None:
    """A box too busy to answer in time was taken for nothing there, and split went ahead; and the
    entrance must listen there next, whatever holds the address."""
    monkeypatch.setattr(running_nodes, "HEALTH_PROBE_S", 0.2)
    config = _box_config(tmp_path)
    port = tomllib.loads(config.read_text())["server"]["port"]
    with socket.create_server(("127.0.0.1", port)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            while True:  # the first connection only tells that something listens: the request comes next
                connection, _ = listener.accept()
                with connection:
                    if not connection.recv(4096):
                        continue
                    if answer is not None:
                        connection.sendall(answer)
                    else:
                        connection.recv(1)  # holds the request until the prober gives up and closes
                    return

        server = threading.Thread(target=serve)
        server.start()
        assert main(["split", str(config), "--nodes", "2"]) == 2
        server.join()
    err = capsys.readouterr().err
    assert err.startswith(f"segcast: {said} at cams.toml's own address (127.0.0.1:{port}), and it is not the entrance")
    assert sorted(p.name for p in tmp_path.glob("cams.*")) == ["cams.toml"]


def test_a_box_listening_on_every_ipv6_address_is_asked_for_at_ipv6_loopback() -> None:
    """asyncio listens on "::" for IPv6 alone: asked for at 127.0.0.1, a running box was not found."""
    assert split_module.reachable_host("::") == "::1"
    assert split_module.reachable_host("0.0.0.0") == "127.0.0.1"


async def _entrance_answers(base: str) -> None:
    """Wait until the entrance at ``base`` answers its ``/healthz``."""
    async with aiohttp.ClientSession() as session:

        async def answers() -> bool:
            try:
                async with session.get(f"{base}healthz") as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(answers, what="the entrance to answer")


def _box_config(folder: Path) -> Path:
    """cams.toml of a box of three generated cameras at a free port, as segcast can run it."""
    config = folder / "cams.toml"
    config.write_text(
        f'[server]\nport = {free_port()}\n\n[model]\nname = "bundled"\n\n'
        + "".join(f'[[streams]]\nid = "{name}"\nuri = "scene:?seed={i}"\n\n' for i, name in enumerate("abc", 1))
    )
    return config


@pytest.mark.timeout(NODES_TIMEOUT_S)
async def test_nodes_and_entrance_started_as_the_split_says_serve_their_cameras(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nodes: Callable[..., None]
) -> None:
    """The commands it prints, run as printed (nginx as whoever runs it: its files beside the config)."""
    require_nginx()
    config = tmp_path / "cams.toml"
    entrance_port = free_port()
    config.write_text(
        f'[server]\nport = {entrance_port}\n\n[model]\nname = "bundled"\n\n'
        + "".join(f'[[streams]]\nid = "{name}"\nuri = "scene:?seed={i}"\n\n' for i, name in enumerate("abc", 1))
    )
    first = consecutive_free_ports(2)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0
    printed = [shlex.split(line) for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert [command[:3] for command in printed[:2]] == [["segcast", "serve", "--config"]] * 2
    nginx, stop = printed[2:4]
    assert Path(nginx[0]).name == "nginx", "no sudo for a port over 1023"
    assert stop[:-2] == nginx and stop[-2:] == ["-s", "stop"], "stopped with the files it was started with"
    nodes(Path(printed[0][3]), Path(printed[1][3]))
    with _nginx(nginx, stop):  # as printed
        base = f"http://127.0.0.1:{entrance_port}/"
        await _entrance_answers(base)
        async with aiohttp.ClientSession() as session:
            for node, ids in (("node-1", ["a", "c"]), ("node-2", ["b"])):
                async with session.get(f"{base}{node}/api/streams?token=s1.viewer.1.not-to-be-logged") as response:
                    streams = (await response.json())["streams"]
                assert [s["id"] for s in streams] == ids
    log = tmp_path / "cams.nginx" / "access.log"
    assert log.read_text().count("GET /node-") == 2 and "not-to-be-logged" not in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_node_whose_stop_is_interrupted_is_killed_all_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's timeout, struck while a node stopped, left it running, and the worker's next test failed
    on its ResourceWarning ("subprocess N is still running")."""
    node = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def interrupted(process: subprocess.Popen[str]) -> None:
        pytest.fail("Timeout (>180.0s) from pytest-timeout.")  # as its signal handler does, in the wait

    monkeypatch.setattr(sys.modules[__name__], "stop_process", interrupted)
    try:
        with pytest.raises(pytest.fail.Exception, match="Timeout"):
            _stop_node(node)
        assert node.returncode == -signal.SIGKILL
    finally:
        node.kill()  # nothing is sent to a process that has exited
        node.communicate()


async def test_the_printed_entrance_command_runs_where_nginx_is_not_on_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian puts nginx in /usr/sbin, on root's PATH but not on a normal user's: the printed `nginx ...`
    was "command not found" for the user the split says may run it."""
    require_nginx()
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")  # a user's, as Debian's /etc/profile sets it
    config = _box_config(tmp_path)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(consecutive_free_ports(2))]) == 0
    start, stop = _entrance_commands(capsys.readouterr().out)
    assert Path(start[0]).is_absolute()
    with _nginx(start, stop):  # as printed, on that PATH
        await _entrance_answers(f"http://127.0.0.1:{tomllib.loads(config.read_text())['server']['port']}/")


def test_a_resplit_that_leaves_the_entrance_as_it_was_says_a_running_one_goes_on(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where its file does not change, a running entrance needs no reload: the split says so, and no more."""
    assert main(["split", str(config), "--nodes", "2"]) == 0
    capsys.readouterr()
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    out = capsys.readouterr().out
    assert "\n(its file has not changed: an entrance already running goes on as it is)\nwhich stops with:\n" in out
    assert "reload" not in out


def _entrance_commands(out: str) -> tuple[list[str], list[str]]:
    """The commands a split printed (``out``) to start and to stop the entrance."""
    commands = [shlex.split(line) for line in out.splitlines() if line.startswith("  ")]
    nginx = [command for command in commands if Path(command[0]).name == "nginx"]
    (start,) = [command for command in nginx if "-s" not in command]
    (stop,) = [command for command in nginx if command[-2:] == ["-s", "stop"]]
    return start, stop


@contextmanager
def _nginx(start: list[str], stop: list[str]) -> Iterator[None]:
    """nginx started by ``start`` (it goes into the background by itself), stopped by ``stop``."""
    subprocess.run(start, check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(stop, check=True, timeout=30)


def _start_node(path: Path) -> subprocess.Popen[str]:
    """``segcast serve --config path`` as the split told the user to run it, started (not yet listening)."""
    return subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--config", str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_until_listening(process: subprocess.Popen[str], path: Path) -> None:
    """Return once the node of ``path`` says it listens; from then on its log is read so it cannot fill the pipe."""
    assert process.stdout is not None
    said = []
    for line in process.stdout:  # bounded by the test's timeout; ends if the process exits
        if line.startswith("segcast: listening on "):
            break
        said.append(line)
    else:
        raise AssertionError(f"{path.name}'s node exited ({process.wait()}): {''.join(said[-5:])}")
    threading.Thread(target=process.stdout.read, daemon=True).start()


def _stop_node(process: subprocess.Popen[str]) -> None:
    """`stop_process`, and a kill where that was interrupted (by the test's timeout): a node left running
    failed the worker's next test ("subprocess N is still running", a ResourceWarning)."""
    try:
        stop_process(process)
    finally:
        if process.returncode is None:
            process.kill()
            process.communicate()


@contextmanager
def _node(path: Path) -> Iterator[None]:
    """``segcast serve --config path`` as the split told the user to run it, until it listens."""
    process = _start_node(path)
    try:
        _wait_until_listening(process, path)
        yield
    finally:
        _stop_node(process)


@pytest.fixture
def nodes() -> Iterator[Callable[..., None]]:
    """``nodes(*paths)``: `_node` for each path, all started before it waits for any to listen, so that
    their loads of torch and the model overlap (one after the other, two outran a loaded machine's 120 s
    test timeout). Every node it started is stopped at teardown, which runs after a test that its timeout
    interrupted too, where a ``finally`` in the test could itself be interrupted."""
    started: list[subprocess.Popen[str]] = []

    def start(*paths: Path) -> None:
        for path in paths:
            started.append(_start_node(path))
        for path, process in zip(paths, started[-len(paths) :], strict=True):
            _wait_until_listening(process, path)

    yield start
    with ExitStack() as stops:  # each is stopped, whatever stopping another raised
        for process in started:
            stops.callback(_stop_node, process)


def _ids(node_file: Path) -> list[str]:
    return [stream.stream_id for stream in load_config(node_file).streams]


def _files(config: Path) -> dict[str, str]:
    """The text of every file a split of ``config`` writes beside it (node files, entrance), by name."""
    return {p.name: p.read_text() for p in config.parent.glob(f"{config.stem}.*") if p.is_file() and p != config}


class _StandInNode(BaseHTTPRequestHandler):
    """A running node as a split and its entrance ask it: segcast's ``/healthz`` (naming no camera), its viewer
    settings (what the entrance asks before it gives its map to a request), a 404 for anything else."""

    ANSWERS: ClassVar[dict[str, bytes]] = {"/healthz": b'{"status": "ok", "v": 1, "streams": 0}', "/api/viewer": b"{}"}

    def do_GET(self) -> None:  # http.server's method name
        body = self.ANSWERS.get(self.path.split("?")[0])
        self.send_response(404 if body is None else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _serving_at(port: int, handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` answering HTTP at 127.0.0.1:``port`` for the block (a node's port, which a split names);
    its address."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"serving-{port}", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def _listening(port: int) -> Iterator[str]:
    """A node of an earlier split, running at ``port`` as a split probes it: its ``/healthz`` is segcast's."""
    with _serving_at(port, _StandInNode) as address:
        yield address


@contextmanager
def _accepting(port: int) -> Iterator[str]:
    """A node of an earlier split too busy to answer (its event loop blocked): it accepts connections at
    ``port`` and says nothing."""
    with socket.socket() as node:
        node.bind(("127.0.0.1", port))
        node.listen()
        yield f"127.0.0.1:{port}"
