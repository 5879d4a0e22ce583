"""``segcast serve`` and ``segcast demo``.

Start-up problems (a model that cannot be loaded, a port in use, bad flags) end the program with one
line on stderr and exit status 2; run-time problems belong to the stream they happen on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from server.app import create_app
from server.config import DEFAULT_HOST, DEFAULT_PORT, ConfigError, Settings, streams_from_flags
from server.models import DEFAULT_MODEL, ModelError
from server.worker import InferenceOptions

DEMO_SOURCES = ("scene:?seed=1", "scene:?seed=2")
EXIT_STARTUP_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segcast", description="Live video segmentation and tracking server.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the viewer and API for the given sources")
    serve.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[ID=]URI",
        help="a camera or video: a file path, file://..., or scene:?seed=N; repeat for more streams",
    )
    serve.add_argument("--loop", action="store_true", help="restart video files when they end")
    _add_common(serve, default_model=DEFAULT_MODEL)

    demo = commands.add_parser("demo", help="serve two built-in generated scenes with the bundled model, offline")
    _add_common(demo, default_model="bundled")
    return parser


def _add_common(parser: argparse.ArgumentParser, default_model: str) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument(
        "--model",
        default=default_model,
        help=f"an ultralytics model name, .pt, .onnx or OpenVINO folder, or 'bundled' (default {default_model})",
    )
    parser.add_argument("--imgsz", type=int, default=None, help="inference size (default: the model's own)")
    parser.add_argument("--conf", type=float, default=0.25, help="minimum detection confidence (default 0.25)")
    parser.add_argument("--tracker", default="bytetrack", help="bytetrack (default), botsort, ocsort, ...")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be between 1 and 65535")
    if not 0.0 <= args.conf <= 1.0:
        raise ConfigError(f"--conf {args.conf}: must be between 0 and 1")
    if args.imgsz is not None and not 32 <= args.imgsz <= 4096:
        raise ConfigError(f"--imgsz {args.imgsz}: must be between 32 and 4096")
    if args.command == "demo":
        sources, loop = list(DEMO_SOURCES), False
    else:
        sources, loop = args.source, args.loop
        if not sources:
            raise ConfigError("serve needs at least one --source (try `segcast demo` for a built-in scene)")
    return Settings(
        host=args.host,
        port=args.port,
        model=args.model,
        inference=InferenceOptions(imgsz=args.imgsz, conf=args.conf),
        streams=streams_from_flags(sources, loop=loop, tracker=args.tracker),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
        url = f"http://{_url_host(settings.host)}:{settings.port}/"
        print(f"segcast: loading model {settings.model}; the viewer will be at {url}", flush=True)
        web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)
    except (ConfigError, ModelError) as exc:
        print(f"segcast: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    except OSError as exc:
        reason = exc.strerror or exc
        print(
            f"segcast: cannot listen on {args.host}:{args.port} ({reason}); choose another --port or --host",
            file=sys.stderr,
        )
        return EXIT_STARTUP_ERROR
    return 0


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    sys.exit(main())
