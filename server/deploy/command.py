"""``segcast split`` on the command line: its arguments, and what it prints.

Apart from `server.deploy.split`, which brings the config reader (and aiohttp with it): ``segcast``
parses its command line before anything heavy is imported (see `server.cli`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.deploy.split import EarlierNode, Split

EXIT_STARTUP_ERROR = 2


def add_arguments(commands: argparse._SubParsersAction) -> None:
    """Add ``split`` to the ``segcast`` command line."""
    split = commands.add_parser(
        "split",
        help="deal a config file's cameras out to several nodes on this machine, with an nginx entrance",
        description="Write a config file per node (FILE.node-1.toml ...), each with every Nth camera of FILE, and "
        "FILE.nginx.conf, an nginx entrance at FILE's address with a path per node. One segcast process "
        "is bound by Python's interpreter lock: on a GPU box, several share the GPU and carry far more cameras.",
    )
    split.add_argument("config", type=Path, metavar="FILE", help="the config file whose [[streams]] to deal out")
    split.add_argument("--nodes", type=int, required=True, help="how many nodes (segcast processes)")
    split.add_argument(
        "--first-port", type=int, default=None, help="node 1's port on 127.0.0.1, the others' next (default FILE's + 1)"
    )
    split.add_argument("--force", action="store_true", help="replace node files and an entrance already there")
    split.add_argument(
        "--dry-run",
        action="store_true",
        help="say where each camera goes and what changes in each file, write nothing (status 2 where it would refuse)",
    )


def run(args: argparse.Namespace) -> int:
    """``segcast split``: write the files and say how to start them; errors are one line and status 2."""
    from server.config import ConfigError
    from server.deploy.split import SplitError, check_split, replaced_changes, split_config, write_split

    try:
        split = split_config(args.config, args.nodes, args.first_port)
        for warning in split.warnings:
            print(f"segcast: warning: {warning}", file=sys.stderr)
        if args.dry_run:  # the plan first: it is what a refusal below is about
            for line in replaced_changes(split):
                print(line)
            _print_placement(split, "would write")
            _print_running(split, check_split(split, args.force))
            return 0
        running = write_split(split, args.force, report=print)
    except (SplitError, ConfigError) as exc:
        print(f"segcast: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    _print_placement(split, "wrote")
    histories = [node for node in split.nodes if node.history is not None]
    if histories:
        others = ", ".join(node.name for node in histories[1:])
        print(
            f"{histories[0].name} goes on in the event history {histories[0].history} (its event ids continue; the "
            "older events of cameras now on other nodes stay there, asked for with ?stream=)"
            + (f"; new ones for {others}" if others else "")
        )
    running_paths = {node.path for node in running}
    stopped = [node for node in split.nodes if node.path not in running_paths]
    if stopped:
        print("\nStart each node (with the same tokens in its environment, if they are not in the file):")
        for node in stopped:
            print(f"  {_serve_command(node.path)}")
    _print_running(split, running)
    _print_entrance(split, "and the entrance" if stopped else "\nThe entrance")
    return 0


def _print_placement(split: Split, verb: str) -> None:
    """A line per node file: its address and cameras."""
    for node in split.nodes:
        print(f"{verb} {node.path} ({node.name}, 127.0.0.1:{node.port}): {', '.join(node.stream_ids) or 'no cameras'}")
    print(f"{verb} {split.entrance_path} (the entrance, at {split.entrance.host}:{split.entrance.port})")


def _print_running(split: Split, running: Sequence[EarlierNode]) -> None:
    """What becomes of each running node of the earlier split (`check_split` let it run on): one that
    gains cameras runs them only once restarted, one node at a time so the others go on serving."""
    by_path = {node.path: node for node in split.nodes}
    for old in running:
        node = by_path[old.path]
        gained = [stream_id for stream_id in node.stream_ids if stream_id not in old.stream_ids]
        if not gained:
            changed = (
                ""
                if node.text == old.text
                else "; its file changed: restart it (one node at a time) to run what the file says now "
                f"({split.source.name}'s settings, above), and before it saves changes through its API again"
            )
            print(f"\n{node.name} is running and keeps its cameras: it runs on as it is{changed}")
            continue
        print(
            f"\n{node.name} is running and gains {', '.join(gained)}: it must be restarted to run "
            f"{'it' if len(gained) == 1 else 'them'} (one node at a time; through your service manager if it "
            "runs under one), as:"
        )
        print(f"  {_serve_command(node.path)}")


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
        print("(its file has not changed: an entrance already running goes on as it is)")
    print(f"which stops with:\n  {shlex.join(split.entrance_stop_command())}")
    scheme = "https" if split.entrance.tls_cert is not None else "http"
    host = split.entrance.host
    shown = "<this machine>" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    print(f"then open {scheme}://{shown}:{split.entrance.port}/")


def _serve_command(config: Path) -> str:
    return f"segcast serve --config {shlex.quote(str(config.resolve()))}"
