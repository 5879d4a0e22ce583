"""``segcast split`` on the command line: its arguments, and what it prints.

Apart from `server.deploy.split` and `server.deploy.split_writing`, which bring the config reader (and
aiohttp with it): ``segcast`` parses its command line before anything heavy is imported (see `server.cli`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.deploy.running_nodes import NodeStreams
    from server.deploy.split import EarlierNode, NodeFile, Split

EXIT_STARTUP_ERROR = 2
#: How to read a retired node's event history, which no node serves: every event, oldest first, its
#: time in Unix seconds and its JSON as MQTT and the webhooks sent it.
RETIRED_HISTORY_QUERY = "SELECT id, time, stream, type, data FROM events ORDER BY id"


def add_arguments(commands: argparse._SubParsersAction) -> None:
    """Add ``split`` to the ``segcast`` command line."""
    split = commands.add_parser(
        "split",
        help="deal a config file's cameras out to several nodes on this machine, with an nginx entrance",
        description="Write a config file per node beside FILE (cams.toml: cams.node-1.toml ...), each with every "
        "Nth camera of FILE, and an nginx entrance at FILE's address with a path per node (cams.nginx.conf). One "
        "segcast process "
        "is bound by Python's interpreter lock: on a GPU box, several share the GPU and carry far more cameras.",
    )
    split.add_argument("config", type=Path, metavar="FILE", help="the config file whose [[streams]] to deal out")
    split.add_argument("--nodes", type=int, required=True, help="how many nodes (segcast processes)")
    split.add_argument(
        "--first-port",
        type=int,
        default=None,
        help="node 1's port on 127.0.0.1, the others' next (default: the earlier split's node 1's, else FILE's + 1)",
    )
    split.add_argument("--force", action="store_true", help="replace node files and an entrance already there")
    split.add_argument(
        "--rebalance",
        action="store_true",
        help="move cameras from the fullest nodes to the emptiest until they differ by one at most (a split keeps "
        "each camera on its node otherwise; each move splits that camera's history and moves its MQTT topics)",
    )
    split.add_argument(
        "--discard-node-changes",
        action="store_true",
        help="replace the settings nodes saved through their API (?persist=1) with FILE's; without it such a split "
        "is refused, showing them to copy into FILE",
    )
    split.add_argument(
        "--dry-run",
        action="store_true",
        help="say where each camera goes and what changes in each file, write nothing (status 2 where it would refuse)",
    )


def run(args: argparse.Namespace) -> int:
    """``segcast split``: write the files and say how to start them; errors are one line and status 2."""
    from server.config_values import ConfigError
    from server.deploy.split import SplitError, split_config
    from server.deploy.split_writing import check_split, replaced_changes, write_split

    try:
        split = split_config(args.config, args.nodes, args.first_port, args.rebalance)
        for warning in split.warnings:
            print(f"segcast: warning: {warning}", file=sys.stderr)
        if args.dry_run:
            for line in replaced_changes(split):
                print(line)
            try:
                running = check_split(split, args.force, args.discard_node_changes)
            except SplitError:
                _print_placement(split, (), (), dry_run=True)  # the plan the refusal is about
                raise
            kept, runs, unread = _running_state(split, running)
            _print_placement(split, kept, unread, dry_run=True)
            _print_mqtt(split)
            _print_running(split, running, runs, kept, unread)
            return 0
        running = write_split(split, args.force, report=print, discard_saves=args.discard_node_changes)
    except (SplitError, ConfigError) as exc:
        print(f"segcast: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    kept, runs, unread = _running_state(split, running)
    _print_placement(split, kept, unread, dry_run=False)
    histories = [node for node in split.nodes if node.history is not None]
    if histories:
        others = ", ".join(node.name for node in histories[1:])
        print(
            f"{histories[0].name} goes on in the event history {histories[0].history} (its event ids continue; the "
            "older events of cameras now on other nodes stay there, asked for with ?stream=)"
            + (f"; new ones for {others}" if others else "")
        )
    for retired in split.retired:
        cameras = ", ".join(retired.stream_ids) or "its cameras"
        print(
            f"{retired.node}'s event history {retired.path} stays as it is, and no node reads it now (no "
            f"/api/events reaches it): the events, with their snapshots, of {cameras} until {retired.node} "
            "stopped; read them with:\n  " + shlex.join(["sqlite3", str(retired.path), RETIRED_HISTORY_QUERY])
        )
    _print_mqtt(split)
    running_paths = {node.path for node in running}
    stopped = [node for node in split.nodes if node.path not in running_paths]
    if stopped:
        print("\nStart each node (with the same tokens in its environment, if they are not in the file):")
        for node in stopped:
            print(f"  {_serve_command(node.path)}")
    _print_running(split, running, runs, kept, unread)
    _print_entrance(split, "and the entrance" if stopped else "\nThe entrance")
    return 0


def _running_state(
    split: Split, running: Sequence[EarlierNode]
) -> tuple[frozenset[Path], Mapping[Path, NodeStreams], frozenset[Path]]:
    """Of the ``running`` nodes: the files ``split`` leaves as they are (`kept_as_is`), what each node says
    it runs, and those of the kept files their node has not read since they changed (`unread_file`)."""
    from server.deploy.running_nodes import unread_file, what_each_runs
    from server.deploy.split_writing import kept_as_is

    kept = kept_as_is(split, running)
    runs = what_each_runs(running)
    return kept, runs, frozenset(path for path in kept if path in runs and unread_file(path, runs[path]))


def _print_placement(split: Split, kept: Collection[Path], unread: Collection[Path], dry_run: bool) -> None:
    """A line per node file: its address and cameras, and whether it was left as it is (`kept_as_is`);
    first, where no --first-port was given and the nodes keep the earlier split's ports, that they do.
    Of a kept file its running node has not read (``unread``: `unread_file`), saves from its API are not
    said to go on: they are refused until it is restarted (`_print_running` says so)."""
    verb = "would write" if dry_run else "wrote"
    if split.ports_kept_from is not None:
        print(
            f"node ports from {split.nodes[0].port}, node-1's in {split.ports_kept_from.name} (the earlier split's: "
            "no node moves; --first-port to choose others)"
        )
    for node in split.nodes:
        placed = f"{node.path} ({node.name}, 127.0.0.1:{node.port}): {', '.join(node.stream_ids) or 'no cameras'}"
        if node.path in unread:
            print(f"{'would leave' if dry_run else 'left'} {placed}, as it is: nothing it runs would change")
        elif node.path in kept:
            print(
                f"{'would leave' if dry_run else 'left'} {placed}, as it is: nothing it runs would change, and "
                f"{node.name}, running, saves its API's changes only to its file as it read it"
            )
        else:
            print(f"{verb} {placed}")
    print(f"{verb} {split.entrance_path} (the entrance, at {split.entrance.host}:{split.entrance.port})")


def _print_mqtt(split: Split) -> None:
    """Where the file publishes MQTT, that each camera's topics move under its node's prefix, where
    automations on the box's topics no longer fire, and that Home Assistant's ids do not change. Over an
    earlier split, only the cameras that change node are named: the others' topics stay where they are."""
    from server.deploy.entrance import node_name

    if split.mqtt is None:
        return
    prefix = split.mqtt.prefix
    if split.earlier:
        was = {stream_id: node_name(node.index) for node in split.earlier for stream_id in node.stream_ids}
        moved = [i for node in split.nodes for i in node.stream_ids if was.get(i) != node.name]
        if moved:
            print(
                f"MQTT topics move for {', '.join(moved)}: to {prefix}/node-N/<camera>/... of the node now running "
                f"each (automations on {prefix}/+/<camera>/events/<type> follow them)"
            )
        return
    print(
        f"MQTT topics move: each node publishes under its own prefix, {prefix}/<camera>/... becomes "
        f"{prefix}/node-N/<camera>/... (N: the node running the camera, again after a move): point automations "
        f"on {prefix}/<camera>/events/<type> at {prefix}/+/<camera>/events/<type>, which follows the camera"
        + (
            f"; Home Assistant's devices and entity ids stay (every node has discovery_id = "
            f'"{split.mqtt.discovery_id}")'
            if split.mqtt.discovery_id is not None
            else ""
        )
        + f". The box's retained topics stay on the broker as it left them ({prefix}/status offline, {prefix}/server, "
        f"and each camera's counts, availability and snapshots), which no node publishes again: once the nodes run, "
        f"list them with mosquitto_sub -v -t '{prefix}/#' --retained-only and clear each of the box's (not under "
        f"{prefix}/node-N/) with an empty retained message (mosquitto_pub -r -n -t {prefix}/status)"
    )


def _print_running(
    split: Split,
    running: Sequence[EarlierNode],
    runs: Mapping[Path, NodeStreams],
    kept: Collection[Path],
    unread: Collection[Path],
) -> None:
    """What becomes of each running node of the earlier split (`check_split` let it run on): one that
    gains cameras runs them only once restarted, one node at a time so the others go on serving, as
    does one whose file, left as it is, changed after it read or saved it (``unread``): it runs what it read,
    and its saves are refused until it reads the file again; and
    what ``runs`` (what each says it runs) shows that its file does not: cameras a restart drops, or
    that run twice, or those its file lists that it does not run. Warnings only: the split is made all
    the same."""
    by_path = {node.path: node for node in split.nodes}
    names = {node.path: node.name for node in split.nodes}
    elsewhere: dict[str, list[str]] = {}  # who runs each camera, as the running nodes say
    for old in running:
        for stream_id in (said.ids or ()) if (said := runs.get(old.path)) is not None else ():
            elsewhere.setdefault(stream_id, []).append(names[old.path])
    for old in running:
        node = by_path[old.path]
        said = runs.get(old.path)
        already = set(said.ids or ()) if said is not None else set()  # in its new file, added through its API
        gained = [i for i in node.stream_ids if i not in old.stream_ids and i not in already]
        if not gained and old.path in unread:
            print(
                f"\n{node.name} is running and keeps its cameras, but {node.name} has not read {old.path.name} "
                "since it changed (the file is newer than its last read or save): restart it to run it; until then "
                "its ?persist=1 saves are refused (restart one node at a time), as:"
            )
            print(f"  {_serve_command(node.path)}")
        elif not gained:
            changed = (
                ""
                if node.path in kept
                else "; its file changed: restart it (one node at a time) to run what the file says now "
                f"({split.source.name}'s settings, above), and before it saves changes through its API again"
            )
            print(f"\n{node.name} is running and keeps its cameras: it runs on as it is{changed}")
        else:
            print(
                f"\n{node.name} is running and gains {', '.join(gained)}: it must be restarted to run "
                f"{'it' if len(gained) == 1 else 'them'} (one node at a time; through your service manager if it "
                "runs under one), as:"
            )
            print(f"  {_serve_command(node.path)}")
        if said is not None:
            warnings = _unsaved_warnings(split, old, node, said)
            for warning in warnings + _not_run_warnings(split, old, node.name, said, elsewhere):
                print(f"  warning: {warning}")
    for warning in _twice_warnings(split, running, runs) + _token_sharing_warnings(split, running, runs):
        print(f"\nwarning: {warning}")


def _unsaved_warnings(split: Split, old: EarlierNode, node: NodeFile, said: NodeStreams) -> list[str]:
    """What the running node of ``old`` (``node`` in this split) runs that its file lacks: added through
    its API without ``?persist=1``, a restart from the file drops it; or, where this split gives it to
    another node, it runs on both. Where the node did not name its cameras, what its count tells (where it
    told none, as a node with tokens does without one it took, nothing: that would be a guess)."""
    source = split.source.name
    if said.ids is None:
        if said.count is None:
            return []
        extra = said.count - len(old.stream_ids)
        cameras = f"{said.count} camera{'s' if said.count != 1 else ''}"
        told = f"{node.name} runs {cameras} (its /healthz), its file {len(old.stream_ids)}"
        if extra <= 0:  # no more than its file has: nothing to say that is not a guess
            return []
        them = "it" if extra == 1 else "them"
        return [
            f"{told}: {extra} added through its API without ?persist=1, which a restart drops unless {source} has "
            f"{them}; which, this split cannot tell: {said.unnamed_because}"
        ]
    given = {stream_id: new.name for new in split.nodes for stream_id in new.stream_ids}
    unsaved = [i for i in said.ids if i not in node.stream_ids and i not in said.never_saved]
    warnings = []
    if dropped := [i for i in unsaved if i not in given]:
        them = "it" if len(dropped) == 1 else "them"
        warnings.append(
            f"{node.name} runs {', '.join(dropped)}, which its file lacks (added through its API without "
            f"?persist=1): a restart drops {them}; add {them} to {source} to keep {them}"
        )
    warnings += [
        f"{node.name} runs {i}, which its file lacks (added through its API without ?persist=1), and this split "
        f"gives it to {given[i]}: on both it runs twice (two event histories, MQTT topics fighting); once "
        f"{given[i]} runs it, remove it from {node.name} (DELETE /{node.name}/api/streams/{i}) or restart {node.name}"
        for i in unsaved
        if i in given
    ]
    return warnings


def _not_run_warnings(
    split: Split, old: EarlierNode, name: str, said: NodeStreams, elsewhere: Mapping[str, Sequence[str]]
) -> list[str]:
    """A warning per camera the file of ``old`` lists that its running node says it does not run:
    removed through its API without a save (no ``?persist=1``, or a save refused), its file still
    has it, so the node runs it again at its next restart, a second time where another node runs it
    now; and the next split keeps it on this node."""
    if said.ids is None:
        return []
    warnings = []
    for stream_id in [i for i in old.stream_ids if i not in said.ids]:
        others = [other for other in elsewhere.get(stream_id, ()) if other != name]
        twice = f" (it runs on {' and '.join(others)} now: twice)" if others else ""
        warnings.append(
            f"{name} does not run {stream_id}, which its file lists (removed through its API without a save): "
            f"a restart of {name} runs it again{twice}; to keep it off {name}, remove its [[streams]] table from "
            f"{old.path.name} (and from {split.source.name} if it is retired), then restart {name}, which saves "
            "no change through its API until it has read the file again"
        )
    return warnings


def _twice_warnings(split: Split, running: Sequence[EarlierNode], runs: Mapping[Path, NodeStreams]) -> list[str]:
    """A warning per camera that two running nodes both say they run: two trackers count each of its
    crossings twice, in two event histories, and each node publishes it under its own MQTT topics."""
    names = {node.path: node.name for node in split.nodes}
    where: dict[str, list[str]] = {}
    for old in running:  # in node order
        if (said := runs.get(old.path)) is not None and said.ids is not None:
            for stream_id in said.ids:
                where.setdefault(stream_id, []).append(names[old.path])
    return [
        f"{stream_id} runs on {' and '.join(nodes)}: twice (two event histories, MQTT topics fighting); remove it "
        f"from all but one through their APIs (DELETE /{nodes[-1]}/api/streams/{stream_id}, ?persist=1 where that "
        "node's file has it)"
        for stream_id, nodes in where.items()
        if len(nodes) > 1
    ]


def _token_sharing_warnings(
    split: Split, running: Sequence[EarlierNode], runs: Mapping[Path, NodeStreams]
) -> list[str]:
    """A warning per running node that refused a token another running node took: the nodes of one fleet
    share their tokens (docs/scaling.md), as the All cameras page asks for one token for all of them and a
    signed link is good only on a node with the token it was minted with. Never the token itself.

    A warning, not a refusal like a node that would lose a camera: the files the split writes are right
    whatever the nodes hold (tokens given in the environment are in no file it writes), nothing runs twice
    for it, and a fleet whose tokens are being rotated, one node restarted at a time, holds two sets for a
    while. It takes a node that takes one of the tokens asked with: where none does, nothing is said."""
    names = {node.path: node.name for node in split.nodes}
    said = [(names[old.path], runs[old.path]) for old in running if old.path in runs]
    warnings = []
    for name, refusing in said:
        takers = [other for other, taking in said if taking.took is not None and taking.took in refusing.refused]
        if not takers:
            continue
        unnamed = f"; which cameras {name} runs, this split cannot tell until then" if refusing.ids is None else ""
        warnings.append(
            f"{name} refused the token {' and '.join(takers)} took: the nodes of one fleet must share their tokens "
            "(the All cameras page asks for one token for every node, and a signed link is good only on a node "
            "with its token): start every node with the same $SEGCAST_ADMIN_TOKENS / $SEGCAST_VIEWER_TOKENS (or "
            f"[auth] tokens in {split.source.name}, which every node file copies), restarting one node at a "
            f"time{unnamed}"
        )
    return warnings


def _print_entrance(split: Split, lead: str) -> None:
    """How to start the entrance, reload a running one where its file changed, and stop it."""
    print(f"{lead}:\n  {shlex.join(split.entrance_command())}")
    if split.entrance_before is not None and split.entrance_changed():
        nodes_before = len(split.earlier)
        changed = f" (nodes: {nodes_before} before, {len(split.nodes)} now)" if nodes_before != len(split.nodes) else ""
        print(
            "or, if the earlier split's entrance is running (a second start fails: Address already in use), "
            f"reload it: it must, to reach the nodes as they are now{changed}:\n  "
            + shlex.join(split.entrance_reload_command())
        )
    elif split.entrance_before is not None:
        print(_unchanged_entrance(split))
    print(f"which stops with:\n  {shlex.join(split.entrance_stop_command())}")
    scheme = "https" if split.entrance.tls_cert is not None else "http"
    host = split.entrance.host
    shown = "<this machine>" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    print(f"then open {scheme}://{shown}:{split.entrance.port}/")


def _unchanged_entrance(split: Split) -> str:
    """What becomes of a running entrance where ``split`` leaves its file as it was: it goes on as it is,
    unless the entrance answering at its address serves another map than the file's (`served_map`, asked
    with the earlier nodes' tokens, as it needs one where they do): started before a split that changed
    the file, and not reloaded since, it sends each camera's old addresses to the node it was on."""
    from server.deploy.entrance import fleet_map_json
    from server.deploy.running_nodes import served_map
    from server.deploy.split import reachable_host

    tokens = list(dict.fromkeys(token for node in split.earlier for token in node.tokens))
    host, port, tls = reachable_host(split.entrance.host), split.entrance.port, split.entrance.tls_cert is not None
    served = served_map(host, port, tls, tokens)
    if served == (200, fleet_map_json([node.name for node in split.nodes], [node.stream_ids for node in split.nodes])):
        return "(its file has not changed, and the running entrance serves it: it goes on as it is)"
    if served is not None and served[0] in (200, 404):  # 404: an entrance of before the map
        return (
            "the running entrance serves an older map than its file (not reloaded since a split changed it): "
            f"reload it:\n  {shlex.join(split.entrance_reload_command())}"
        )
    return "(its file has not changed: an entrance already running goes on as it is)"


def _serve_command(config: Path) -> str:
    return f"segcast serve --config {shlex.quote(str(config.resolve()))}"
