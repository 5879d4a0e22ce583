"""``segcast split`` writing its files: all of them or none, each its owner's to write, found again by
the next split whatever the file's name, and the nodes kept where they were.

A node saves its API's changes into its own file and a later split (``--force``) replaces the files,
so a split that stops halfway, or files their owner cannot write, leave cameras in no file or in two.
"""

from __future__ import annotations

import stat
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from server.cli import main
from server.config import load_config
from server.deploy.node_files import toml_document
from server.deploy.split import split_config
from server.deploy.split_writing import write_split
from server.options import StreamOptions
from server.persist import write_config
from tests.support.ports import consecutive_free_ports
from tests.test_split import _files, _ids

CAMERAS = "".join(
    f'[[streams]]\nid = "{name}"\nuri = "scene:?seed={i}"\n\n' for i, name in enumerate(("c1", "c2", "c3"))
)
CONFIG = (
    f'[server]\nport = 8090\njpeg_quality = 70\n\n[auth]\nadmin_tokens = ["an-admin-token-of-the-box"]\n\n{CAMERAS}'
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cams.toml"
    path.write_text(CONFIG)
    return path


def _node_file(config: Path, index: int) -> Path:
    return config.with_name(f"{config.stem}.node-{index}.toml")


def _port(node_file: Path) -> int:
    port: int = tomllib.loads(node_file.read_text())["server"]["port"]
    return port


def test_node_files_of_a_read_only_file_are_their_owners_to_write(config: Path) -> None:
    """A read-only cams.toml gave read-only node files: a node could not save its API's changes there,
    and the next --force split removed the file of the node beyond the new number, then failed on the
    first read-only one, leaving its camera in no file and the entrance routing to the node removed."""
    config.chmod(0o444)
    assert main(["split", str(config), "--nodes", "3"]) == 0  # c1; c2; c3
    modes = [stat.S_IMODE(_node_file(config, i).stat().st_mode) for i in (1, 2, 3)]
    assert modes == [0o640] * 3, "its owner writes it; others never read a file that may hold tokens"

    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    assert not _node_file(config, 3).exists()
    assert [_ids(_node_file(config, i)) for i in (1, 2)] == [["c1", "c3"], ["c2"]]
    assert [stat.S_IMODE(_node_file(config, i).stat().st_mode) for i in (1, 2)] == [0o640] * 2


def test_a_folder_where_a_node_file_goes_stops_the_split_before_any_file_changes(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The split removed node 3's file, rewrote node 1's, then failed at node 2's: c3 was in no node
    file, node 1's file said what its running node did not, and the entrance still routed to node-3."""
    assert main(["split", str(config), "--nodes", "3"]) == 0  # c1; c2; c3
    node_2 = _node_file(config, 2)
    node_2.unlink()
    node_2.mkdir()
    config.write_text(CONFIG.replace("jpeg_quality = 70", "jpeg_quality = 80"))  # every node file would change
    before = _files(config)
    names = sorted(path.name for path in config.parent.iterdir())
    capsys.readouterr()

    for dry_run in (["--dry-run"], []):
        assert main(["split", str(config), "--nodes", "2", "--force", *dry_run]) == 2
        assert capsys.readouterr().err == (
            f"segcast: cannot write {node_2}: it is a folder, not a file; nothing was written: move it away, "
            "then split again\n"
        )
    assert _files(config) == before
    assert sorted(path.name for path in config.parent.iterdir()) == names, "nothing left behind either"

    node_2.rmdir()
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    assert [_ids(_node_file(config, i)) for i in (1, 2)] == [["c1", "c3"], ["c2"]]
    assert sorted(path.name for path in config.parent.iterdir()) == [
        "cams.nginx",
        "cams.nginx.conf",
        "cams.node-1.toml",
        "cams.node-2.toml",
        "cams.toml",
    ]


def test_a_file_named_with_glob_characters_finds_its_earlier_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """site[b].toml looked for its node files as a pattern (site followed by b): a split into fewer
    nodes left site[b].node-3.toml, whose camera went to node 1 too, and ran twice once both started."""
    config = tmp_path / "site[b].toml"
    config.write_text(CONFIG)
    assert main(["split", str(config), "--nodes", "3"]) == 0
    assert main(["split", str(config), "--nodes", "2"]) == 2
    assert "removes the files of nodes beyond the new number" in capsys.readouterr().err
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    assert not _node_file(config, 3).exists()
    assert [_ids(_node_file(config, i)) for i in (1, 2)] == [["c1", "c3"], ["c2"]]


def test_a_resplit_without_first_port_keeps_the_nodes_where_they_are(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a split with --first-port, the next one without it put every node at the file's port + 1:
    each node to restart, every link to it changed, and a running one refused as moving."""
    first = consecutive_free_ports(3)
    assert main(["split", str(config), "--nodes", "2", "--first-port", str(first)]) == 0
    config.write_text(CONFIG + '[[streams]]\nid = "c4"\nuri = "scene:?seed=4"\n')
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "3", "--force"]) == 0
    out = capsys.readouterr().out
    assert f"node ports from {first}, node-1's in cams.node-1.toml (the earlier split's: no node moves;" in out
    assert [_port(_node_file(config, i)) for i in (1, 2, 3)] == [first, first + 1, first + 2]

    assert main(["split", str(config), "--nodes", "3", "--force", "--first-port", "8091"]) == 0  # moved on purpose
    assert [_port(_node_file(config, i)) for i in (1, 2, 3)] == [8091, 8092, 8093]
    capsys.readouterr()
    assert main(["split", str(config), "--nodes", "3", "--force"]) == 0
    assert "node ports from" not in capsys.readouterr().out, "the file's port + 1: nothing to say"


@pytest.mark.parametrize(
    ("earlier_first_port", "earlier_nodes", "nodes"),
    [(8085, 2, 6), (65534, 2, 3)],
    ids=["the grown range would cover the entrance", "the grown range would pass 65535"],
)
def test_a_resplit_without_first_port_where_the_earlier_ports_have_no_room_takes_the_default(
    tmp_path: Path, earlier_first_port: int, earlier_nodes: int, nodes: int
) -> None:
    """Kept where node 1 was, the grown range would be refused (the entrance's port among the nodes', or
    one past 65535) though the user gave no port to blame: the nodes go from the file's port + 1 instead."""
    config = tmp_path / "cams.toml"
    cameras = "".join(f'[[streams]]\nid = "c{i}"\nuri = "scene:?seed={i}"\n\n' for i in range(1, 7))
    config.write_text(f"[server]\nport = 8090\n\n{cameras}")
    write_split(split_config(config, earlier_nodes, first_port=earlier_first_port), overwrite=False)

    split = split_config(config, nodes)
    assert [node.port for node in split.nodes] == list(range(8091, 8091 + nodes))
    assert split.ports_kept_from is None


def test_a_camera_in_two_node_files_stays_on_the_lower_node(config: Path) -> None:
    """As documented (`place_streams`): the lower node keeps it, and the other's copy is dropped."""
    assert main(["split", str(config), "--nodes", "2"]) == 0  # c1, c3; c2
    node_2 = _node_file(config, 2)
    saved = tomllib.loads(node_2.read_text())
    saved["streams"].append({"id": "c3", "uri": "scene:?seed=2"})  # added to node 2 too, ?persist=1
    node_2.write_text(toml_document(saved))
    assert [node.stream_ids for node in split_config(config, 2).nodes] == [("c1", "c3"), ("c2",)]


def test_a_resplit_lists_each_setting_that_changes_in_a_node_file_with_its_old_and_new_value(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[model] max_batch changed in cams.toml: the change list said "the same cameras" for every node file,
    and the running nodes were told to restart for "cams.toml's settings, above", which nothing above named."""
    config.write_text(CONFIG.replace("[auth]", '[model]\nname = "bundled"\nmax_batch = 8\n\n[auth]'))
    assert main(["split", str(config), "--nodes", "2"]) == 0  # c1, c3; c2
    config.write_text(config.read_text().replace("max_batch = 8", "max_batch = 4"))
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  cams.node-1.toml: the same cameras; [model] max_batch: 8 -> 4" in lines
    assert "  cams.node-2.toml: the same cameras; [model] max_batch: 8 -> 4" in lines
    assert not [line for line in lines if "jpeg_quality" in line or "[model] name" in line], "they stay as they were"


def test_a_changed_token_is_named_in_the_change_list_but_never_shown(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The change list goes to a terminal and into logs: a token in it would be one more place to leak it."""
    assert main(["split", str(config), "--nodes", "2"]) == 0
    config.write_text(CONFIG.replace("an-admin-token-of-the-box", "a-new-admin-token-of-the-box"))
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force", "--dry-run"]) == 0
    out = capsys.readouterr().out
    said = "the same cameras; [auth] admin_tokens: changed (not shown: it may hold a secret)"
    assert f"  cams.node-1.toml: {said}" in out.splitlines()
    assert "admin-token-of-the-box" not in out


def _save_through_the_api(node_file: Path, stream_id: str, **options: float) -> None:
    """``options`` given to ``stream_id`` through its node's API with ?persist=1: written as the node writes them."""
    settings = load_config(node_file)
    streams = [
        replace(stream, options=replace(stream.options, **options)) if stream.stream_id == stream_id else stream
        for stream in settings.streams
    ]
    write_config(settings, streams)


def _save_zones_through_the_api(node_file: Path, stream_id: str, zones: list[dict[str, object]]) -> None:
    """``zones`` drawn in ``stream_id``'s view on its node and saved there (?persist=1), as the node writes them."""
    settings = load_config(node_file)
    streams = [
        replace(stream, options=StreamOptions.from_mapping({"zones": zones}, stream.options))
        if stream.stream_id == stream_id
        else stream
        for stream in settings.streams
    ]
    write_config(settings, streams)


POND = {"name": "pond", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]], "units": "fraction"}


def test_a_resplit_that_would_drop_zones_a_node_saved_is_refused_showing_them_to_copy(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zone drawn in node-2's viewer and saved to its file (?persist=1) was dropped by the next routine
    `split --force` (a camera added to cams.toml), said in one line of its report, status 0. Now that split
    is refused, writing nothing, with the settings shown as the node file has them, a line each: pasted
    among the camera's keys in cams.toml (where a sub-table header took the keys under it), the split goes
    through and node-2 keeps them, and the camera's own other keys stay its own."""
    config.write_text(
        config.read_text().replace('uri = "scene:?seed=1"\n', 'uri = "scene:?seed=1"\nmin_area = 0.002\n')
    )
    assert main(["split", str(config), "--nodes", "2"]) == 0  # c1, c3; c2
    node_2 = _node_file(config, 2)
    _save_zones_through_the_api(node_2, "c2", [POND])
    _save_through_the_api(node_2, "c2", conf=0.3)
    config.write_text(config.read_text() + '[[streams]]\nid = "c4"\nuri = "scene:?seed=4"\n')
    saved = node_2.read_text()
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force"]) == 2
    err = capsys.readouterr().err
    said, shown = err.split("\n\n", 1)
    assert said == (
        "segcast: settings saved through a node's API (?persist=1) differ from cams.toml's, and this split would "
        "replace them with cams.toml's (cams.node-2.toml: c2's conf, zones); nothing was written: copy those you "
        "want to keep into each camera's table in cams.toml, in place of its keys of those names (below, as each "
        "node file has them), or split again with --discard-node-changes to drop them"
    )
    header, *lines = shown.strip().splitlines()
    assert header == "# cams.node-2.toml, camera 'c2':"
    assert tomllib.loads("\n".join(lines)) == {"conf": 0.3, "zones": [POND]}
    assert node_2.read_text() == saved
    assert "c4" not in _ids(_node_file(config, 1)) + _ids(node_2)

    assert main(["split", str(config), "--nodes", "2", "--force", "--dry-run"]) == 2  # as the split would say
    capsys.readouterr()
    pasted = "\n".join(lines)  # under c2's id, above its own keys
    config.write_text(config.read_text().replace('id = "c2"\n', f'id = "c2"\n{pasted}\n'))
    assert main(["split", str(config), "--nodes", "2", "--force"]) == 0
    assert "lost" not in capsys.readouterr().out
    (c2,) = [stream for stream in load_config(node_2).streams if stream.stream_id == "c2"]
    assert [zone.name for zone in c2.options.zones] == ["pond"]
    assert (c2.options.conf, c2.options.min_area) == (0.3, 0.002)


def test_a_refusal_names_a_cameras_address_saved_on_a_node_but_never_shows_its_password(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A camera's new address, given through node-2's API, may hold its password: named, not shown."""
    assert main(["split", str(config), "--nodes", "2"]) == 0
    node_2 = _node_file(config, 2)
    settings = load_config(node_2)
    streams = [replace(stream, uri="rtsp://admin:s3cret-pw@10.0.0.7/1") for stream in settings.streams]
    write_config(settings, streams)
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force"]) == 2
    err = capsys.readouterr().err
    assert "(cams.node-2.toml: c2's uri)" in err
    assert "s3cret-pw" not in err
    assert "# uri: not shown (it may hold a password): see cams.node-2.toml" in err


def test_a_node_file_its_api_saved_in_that_cannot_be_read_is_not_replaced_unsaid(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node file with a zone saved through its API, then one bad hand edit: the split could not read it and
    replaced it as a whole, the zone gone, status 0. Refused now, unless --discard-node-changes."""
    assert main(["split", str(config), "--nodes", "2"]) == 0
    node_2 = _node_file(config, 2)
    _save_zones_through_the_api(node_2, "c2", [POND])
    node_2.write_text(node_2.read_text() + "\n[model]\nmax_batch = 0\n")
    broken = node_2.read_text()
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the warning that it cannot be read
    assert err.startswith("segcast: cams.node-2.toml holds settings its node's API saved, and cannot be read (")
    assert "mend the file so that it loads, or split again with --discard-node-changes" in err
    assert node_2.read_text() == broken
    assert main(["split", str(config), "--nodes", "2", "--force", "--discard-node-changes"]) == 0
    assert "pond" not in node_2.read_text()


def test_discard_node_changes_replaces_a_nodes_saved_settings_with_the_source_files(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--discard-node-changes: the split goes on, says what it drops, and the node file has cams.toml's."""
    assert main(["split", str(config), "--nodes", "2"]) == 0
    node_2 = _node_file(config, 2)
    _save_zones_through_the_api(node_2, "c2", [POND])
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force", "--discard-node-changes"]) == 0
    assert "    c2: its zones saved here differ from cams.toml's: lost" in capsys.readouterr().out.splitlines()
    (c2,) = [stream for stream in load_config(node_2).streams if stream.stream_id == "c2"]
    assert c2.options.zones == ()


def test_a_changed_stream_default_is_no_cameras_setting_saved_through_its_node(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[stream_defaults] conf 0.3 -> 0.4 in cams.toml: every camera was said to have its conf "saved here"
    (through its node's API) and lost, where none was; those saved there are lost, and said to be."""
    config.write_text(CONFIG.replace("[auth]", "[stream_defaults]\nconf = 0.3\n\n[auth]"))
    assert main(["split", str(config), "--nodes", "2"]) == 0  # c1, c3; c2
    _save_through_the_api(_node_file(config, 2), "c2", conf=0.6)
    _save_through_the_api(_node_file(config, 1), "c3", iou=0.5)  # its conf is the default's, as c1's
    config.write_text(config.read_text().replace("conf = 0.3", "conf = 0.4"))
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force", "--discard-node-changes", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for node in ("cams.node-1.toml", "cams.node-2.toml"):  # the change itself, said once for each node file
        said = next(line for line in lines if line.startswith(f"  {node}: the same cameras"))
        assert said.endswith("; [stream_defaults] conf: 0.3 -> 0.4")
    assert [line for line in lines if "saved here" in line] == [
        "    c3: its iou saved here differ from cams.toml's: lost",
        "    c2: its conf saved here differ from cams.toml's: lost",
    ]


def test_a_node_file_its_api_saved_lists_no_setting_the_resplit_leaves_as_it_was(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node's API save writes settings out in full (``[model] name`` though the split left it to its
    default): a re-split of an unchanged cams.toml changes no setting of that file, and says none."""
    assert main(["split", str(config), "--nodes", "2"]) == 0
    _save_through_the_api(_node_file(config, 1), "c1", iou=0.5)
    assert "[model]" in _node_file(config, 1).read_text()  # the save spelled out what the split had left out
    capsys.readouterr()

    assert main(["split", str(config), "--nodes", "2", "--force", "--discard-node-changes", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  cams.node-1.toml: the same cameras" in lines
    assert "    c1: its iou saved here differ from cams.toml's: lost" in lines


def test_a_webhooks_changed_secret_and_url_are_named_but_never_shown(tmp_path: Path) -> None:
    """[[events.webhooks]] is a list of tables: it was shown whole, its URL (a Slack hook's secret path)
    and its HMAC secret with it, where every other secret is named only."""
    from server.deploy.split_writing import _setting_changes

    hook = '[[events.webhooks]]\nurl = "https://hooks.example.com/services/{path}"\nsecret = "{secret}"\n'
    old = hook.format(path="OLD-PATH", secret="old-hmac-secret")
    new = hook.format(path="NEW-PATH", secret="new-hmac-secret") + "retries = 5\n"
    said = _setting_changes(old, new, tmp_path / "cams.node-1.toml")
    assert said == [
        "[events.webhooks[0]] url: changed (not shown: it may hold a secret)",
        "[events.webhooks[0]] secret: changed (not shown: it may hold a secret)",
        "[events.webhooks[0]] retries: the default -> 5",
    ], said
