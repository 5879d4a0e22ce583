"""``segcast split`` on the command line: its arguments, and what it prints.

Apart from `server.deploy.split`, which brings the config reader (and aiohttp with it): ``segcast``
parses its command line before anything heavy is imported (see `server.cli`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

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


def run(args: argparse.Namespace) -> int:
    """``segcast split``: write the files and say how to start them; errors are one line and status 2."""
    from server.config import ConfigError
    from server.deploy.split import SplitError, split_config, write_split

    try:
        split = split_config(args.config, args.nodes, args.first_port)
        for warning in split.warnings:
            print(f"segcast: warning: {warning}", file=sys.stderr)
        write_split(split, args.force, report=print)
    except (SplitError, ConfigError) as exc:
        print(f"segcast: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    for node in split.nodes:
        print(f"wrote {node.path} ({node.name}, 127.0.0.1:{node.port}): {', '.join(node.stream_ids)}")
    print(f"wrote {split.entrance_path} (the entrance, at {split.entrance.host}:{split.entrance.port})")
    histories = [node for node in split.nodes if node.history is not None]
    if histories:
        others = ", ".join(node.name for node in histories[1:])
        print(
            f"{histories[0].name} goes on in the event history {histories[0].history} (its event ids continue; the "
            "older events of cameras now on other nodes stay there, asked for with ?stream=)"
            + (f"; new ones for {others}" if others else "")
        )
    print("\nStart each node (with the same tokens in its environment, if they are not in the file):")
    for node in split.nodes:
        print(f"  segcast serve --config {shlex.quote(str(node.path.resolve()))}")
    scheme = "https" if split.entrance.tls_cert is not None else "http"
    print(f"and the entrance:\n  {shlex.join(split.entrance_command())}")
    if split.entrance_path in split.existing:
        print(
            "or, if the earlier split's entrance is running (a second start fails: Address already in use), "
            f"reload it:\n  {shlex.join(split.entrance_reload_command())}"
        )
    print(f"which stops with:\n  {shlex.join(split.entrance_stop_command())}")
    host = split.entrance.host
    shown = "<this machine>" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    print(f"then open {scheme}://{shown}:{split.entrance.port}/")
    return 0
