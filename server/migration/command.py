"""``segcast import-frigate`` on the command line: read a Frigate config, write a segcast one.

The file written is read back as ``segcast serve --config`` reads it before it is kept, so a conversion
segcast itself would refuse is a one-line error here, not at the first start. Apart from
`server.migration.frigate`: ``segcast`` parses its command line before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_STARTUP_ERROR = 2


def add_arguments(commands: argparse._SubParsersAction) -> None:
    """Add ``import-frigate`` to the ``segcast`` command line."""
    command = commands.add_parser(
        "import-frigate",
        help="write a segcast config file from a Frigate config.yml: cameras, objects, filters, masks, zones, MQTT",
        description="Write a segcast config file from a Frigate config.yml: each camera's detect input, the objects "
        "it tracks and at what rate, its per-object filters and masks (as class filters and ignore zones), its "
        "zones and the MQTT broker. What has no segcast equivalent is listed at the top of the file and here.",
    )
    command.add_argument("frigate", type=Path, metavar="CONFIG_YML", help="Frigate's config file (YAML)")
    command.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="the segcast config file to write (default: print it)"
    )
    command.add_argument("--force", action="store_true", help="replace --out where it exists")


def run(args: argparse.Namespace) -> int:
    """Convert, check the result as segcast reads a config file, then print it or write --out."""
    import tomllib

    import yaml

    from server.config import settings_from_mapping
    from server.config_values import ConfigError
    from server.migration.frigate import FrigateConfigError, convert
    from server.sources import SourceError, check_uri

    source: Path = args.frigate
    out: Path | None = args.out
    try:
        frigate = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        return _refused(f"{source}: cannot read it ({exc.strerror or exc})")
    except yaml.YAMLError as exc:
        return _refused(f"{source}: not valid YAML ({' '.join(str(exc).split())})")
    if not isinstance(frigate, dict):
        return _refused(f"{source}: not a Frigate config (expected a mapping with cameras:)")
    if out is not None and out.exists() and not args.force:
        return _refused(f"--out {out}: exists; give --force to replace it")
    try:
        conversion = convert(frigate, source.name)
        settings = settings_from_mapping(tomllib.loads(conversion.text), out or Path("segcast.toml"), {})
        for stream in settings.streams:  # as `serve` checks each source before it opens any
            try:
                check_uri(stream.uri)
            except SourceError as exc:
                raise FrigateConfigError(f"{source.name}: cameras.{stream.stream_id}: its input: {exc}") from None
    except (FrigateConfigError, ConfigError) as exc:
        return _refused(str(exc))
    for note in conversion.notes:
        print(f"segcast: note: {note}", file=sys.stderr)
    if out is None:
        print(conversion.text, end="")
        return 0
    out.unlink(missing_ok=True)  # --force: made anew, with its owner's permissions alone
    with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as file:
        file.write(conversion.text)  # the cameras' and the broker's passwords: readable by its owner alone
    print(
        f"wrote {out} (readable by you alone: it holds the cameras' passwords): start it with  "
        f"segcast serve --config {out}",
        file=sys.stderr,
    )
    return 0


def _refused(message: str) -> int:
    print(f"segcast: {message}", file=sys.stderr)
    return EXIT_STARTUP_ERROR
