"""``segcast serve``, ``segcast demo``, ``segcast export`` and ``segcast split``.

Start-up problems (a model that cannot be loaded, a port in use, bad flags) end the program with one
line on stderr and exit status 2; run-time problems belong to the stream they happen on.

This module imports only what parsing the command line needs, so ``segcast serve`` says it is starting
at once; PyTorch, aiohttp and the pipeline (seconds to import on a small machine) come after that line,
and after the flags are checked, so a mistake in them is said without that wait. What only building the
parser or a command needs (the export, Triton and split commands, the stream options: numpy among
them) is imported inside `main`, where a Ctrl-C during the imports ends with ``segcast: interrupted`` as
later ones do, not with a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from server.http.network.listen import DEFAULT_HOST, DEFAULT_PORT, ListenError
from server.inference.telemetry import switch_off_ultralytics_telemetry
from server.log_format import log_formatter
from server.version import INSTALLED_VERSION

if TYPE_CHECKING:
    from server.config import Settings, StreamConfig
    from server.inference.options import InferenceOptions
    from server.streams import StreamOptionsError

DEMO_SOURCES = ("scene:?seed=1", "scene:?seed=2")
#: The demo's first scene comes with a line and a zone, so that counts, zone membership and their
#: events show before anyone has drawn one; they can be moved or deleted in the viewer like any other.
DEMO_SHAPES = {
    "lines": [{"name": "middle", "points": [[0.5, 0.05], [0.5, 0.95]], "units": "fraction"}],
    "zones": [{"name": "corner", "points": [[0.6, 0.5], [0.95, 0.5], [0.95, 0.95], [0.6, 0.95]], "units": "fraction"}],
}
EXIT_STARTUP_ERROR = 2
#: A shell's status for a program ended by Ctrl-C (128 + SIGINT); also a stop cut short by a third signal.
EXIT_INTERRUPTED = 130
#: A stop that did not end within `server.serve.STOP_LIMIT_S`, ended there.
EXIT_STOP_OVERRAN = 1
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
IMGSZ_HELP = "inference size in pixels, a multiple of 32 (default: the model's own)"

#: What ``serve --help`` and ``demo --help`` end with: what no flag says. The variables' names are
#: those `server.http.access.auth`, `server.webrtc.config` and `server.inference.weights` read (not imported
#: here: they bring aiohttp and PyTorch before the first line); tests/test_cli.py checks they match.
SERVE_EPILOG = """\
environment:
  SEGCAST_ADMIN_TOKENS   access tokens that may watch and change streams, comma-separated
  SEGCAST_VIEWER_TOKENS  access tokens that may only watch, comma-separated (listening beyond
                         127.0.0.1 needs tokens of either kind, here or in the config file's [auth])
  SEGCAST_ICE_SERVERS    STUN/TURN servers for WebRTC, e.g. "stun:stun.example.org:3478"
  SEGCAST_WEIGHTS_URL    a mirror to download models from, for --model names

A source takes options after '#': rtsp://cam/live#transport=udp, clip.mp4#rate=max, ...; README.md
has them, the config file's keys and the API; docs/ the protocol, the analytics and scale-out.
"""


class CommandParser(argparse.ArgumentParser):
    """segcast's parsers: a flag must be given in full, and a command refuses what it does not know itself.

    argparse took any unambiguous prefix (``--sou`` for ``--source``), which a new flag can make
    ambiguous or mean something else; and a command's unknown flag was refused by the top-level parser,
    with segcast's usage instead of the command's and no word of the flag that was probably meant.
    Commands made with ``add_subparsers`` are of this class too (argparse gives them their parent's).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})
        #: segcast's commands by name, this one among them, where this parser is one of them (`build_parser`).
        self.commands: Mapping[str, argparse.ArgumentParser] = {}

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, unknown = super().parse_known_args(args, namespace)
        if unknown:
            hint = self._taken_by_another_command(unknown) or self._did_you_mean(unknown)
            self.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
        return parsed, unknown

    def _taken_by_another_command(self, unknown: list[str]) -> str:
        """`` (demo takes no --config: segcast serve --config FILE)`` for the first unknown flag that other
        commands take: it was told the one of its own it starts with (``--conf``), which it never meant."""
        own = self.prog.rpartition(" ")[2]
        for given in unknown:
            name = given.partition("=")[0]
            if not name.startswith("--"):
                continue
            takers = {
                command: action
                for command, parser in self.commands.items()
                if parser is not self
                for action in parser._actions
                if name in action.option_strings
            }
            if takers:
                action = next(iter(takers.values()))
                value = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
                example = " or ".join(f"segcast {command}" for command in takers)
                return f" ({own} takes no {name}: {example} {name}{value})"
        return ""

    def _did_you_mean(self, unknown: list[str]) -> str:
        """`` (did you mean --source?)`` for the first unknown flag close to one of this command's.

        A flag the one given starts with (``--conf`` for ``--confidence``), or the one flag it starts
        (``--source`` for ``--sou``), is the likeliest; a start several flags share (``--t``) names none;
        else the closest in spelling, if it is close: a loose match named ``--config`` for
        ``--confidence`` and ``--host`` for ``--bogus``."""
        flags = [flag for action in self._actions for flag in action.option_strings if flag.startswith("--")]
        for given in unknown:
            name = given.partition("=")[0]
            if not name.startswith("--"):
                continue
            run_on = [flag for flag in flags if name.startswith(flag)]
            cut_short = [flag for flag in flags if flag.startswith(name)]
            if run_on:
                return f" (did you mean {max(run_on, key=len)}?)"
            if cut_short:
                return f" (did you mean {cut_short[0]}?)" if len(cut_short) == 1 else ""
            if close := difflib.get_close_matches(name, flags, n=1, cutoff=0.75):
                return f" (did you mean {close[0]}?)"
        return ""


def build_parser() -> argparse.ArgumentParser:
    from server.deploy import command as split_command
    from server.events.history import backup
    from server.inference.export import FORMATS
    from server.inference.models import DEFAULT_MODEL
    from server.migration import command as migration
    from server.triton import cpu_server

    parser = CommandParser(prog="segcast", description="Live video segmentation and tracking server.")
    version = INSTALLED_VERSION or "(not installed: pip install -e . in its folder)"
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve the viewer and API for the given sources",
        description="Serve the viewer, the API and the analytics for cameras and videos, from --source "
        "flags or a config file.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file with [server], [model], [auth], [stream_defaults], [[streams]] and [events.*]; "
        "flags override it",
    )
    serve.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[ID=]URI",
        help="a camera or video: rtsp://..., rtmp://..., http(s)://... (MJPEG, HLS or a video), webcam:0, "
        "/dev/video0 or /dev/v4l/by-id/..., a file path, or scene:?seed=N; repeat for more streams",
    )
    serve.add_argument(
        "--loop",
        action="store_true",
        help="restart the video files of --source streams when they end (a config file's stream: loop = true)",
    )
    _add_common(serve, default_model=DEFAULT_MODEL)

    demo = commands.add_parser(
        "demo",
        help="serve two built-in generated scenes with the bundled model, offline "
        "(the first with a counting line and a zone)",
        description="Serve two built-in generated scenes with the bundled model, offline: the first with a "
        "counting line and a zone. Open the address it prints.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(demo, default_model="bundled")

    export = commands.add_parser(
        "export",
        help="turn a .pt model into an ONNX Runtime or OpenVINO model (faster on CPU), or a Triton model repository",
        description="Turn a .pt model into an ONNX Runtime or OpenVINO model (faster on a CPU), or a model "
        "repository for NVIDIA Triton; the result is loaded and run once before it is written to --out.",
    )
    export.add_argument(
        "--model",
        default="bundled",
        help="a local .pt file, a model ultralytics publishes (downloaded), or 'bundled' "
        "(default bundled: segcast's own model, which knows the generated scenes' shapes)",
    )
    export.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="onnx (ONNX Runtime), openvino, or triton (a model repository for NVIDIA Triton, --out is its folder)",
    )
    export.add_argument("--imgsz", type=int, default=None, help=IMGSZ_HELP)
    export.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="where to write it (default .)")
    export.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS, help="how much to log (default WARNING)")

    cpu_server.add_arguments(commands)
    split_command.add_arguments(commands)
    backup.add_arguments(commands)
    migration.add_arguments(commands)
    commands.metavar = "{" + ",".join(commands.choices) + "}"  # named in the "required" error, not `command`
    for command in commands.choices.values():
        command.commands = commands.choices
    return parser


def _add_common(parser: argparse.ArgumentParser, default_model: str) -> None:
    # Defaults are None so that a flag given on the command line can be told from one left out,
    # which the config file's value then fills in.
    parser.add_argument("--host", default=None, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=None, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument(
        "--model",
        default=None,
        help=(
            "an ultralytics model name, .pt, .onnx or OpenVINO folder, 'bundled', or a model on a Triton server: "
            f"grpc://HOST:8001/MODEL (default {default_model})"
        ),
    )
    parser.set_defaults(default_model=default_model)
    # --imgsz and --conf are read from their text in `_flag_defaults`, so that an error shows what was typed.
    parser.add_argument("--imgsz", default=None, help=IMGSZ_HELP)
    parser.add_argument("--conf", default=None, help="minimum detection confidence, 0.01 to 1 (default 0.25)")
    parser.add_argument(
        "--device",
        default=None,
        help="where the model runs: auto (default: the NVIDIA GPU where PyTorch sees one, else the CPU), cpu, "
        "cuda:N or mps",
    )
    parser.add_argument(
        "--tracker", default=None, help="segtrack (default: masks and colours), bytetrack, botsort, ocsort, ..."
    )
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="how much to log (default INFO)")
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request (off by default)")
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="serve HTTPS with this certificate")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="the private key of --tls-cert")


#: The stream options that are flags, and what their text is read as.
OPTION_FLAGS: dict[str, type] = {"imgsz": int, "conf": float, "tracker": str}


def _flag_defaults(args: argparse.Namespace) -> dict[str, object]:
    """Stream options given as flags, each checked on its own so an error names its flag and shows what was
    typed (``--conf: ..., got 5``, where the option's own reason says ``got 5.0``)."""
    from server.config_values import ConfigError
    from server.options import StreamOptions

    given: dict[str, object] = {}
    for key, kind in OPTION_FLAGS.items():
        text = getattr(args, key)
        if text is None:
            continue
        try:
            value = kind(text)
        except ValueError:
            value = text  # the option says what it takes (imgsz also takes 'model')
        try:
            StreamOptions.from_mapping({key: value})
        except ValueError as exc:
            reason = str(exc).partition(": ")[2]
            typed = reason.replace(f", got {value!r}", f", got {text}").replace(f", got {value}", f", got {text}")
            raise ConfigError(f"--{key}: {typed}") from None
        given[key] = value
    return given


def _file_only(path: Path, with_flags: Settings) -> Settings:
    """What the config file says without the flags: what an API change writes back.

    A file that only loads with its flags (a stream's ``tracker_settings`` that only ``--tracker``'s
    tracker has) says nothing segcast could write without them, and written with them it would keep
    their values for good: it is given here without a config path, so that a save is refused.
    """
    from server.config import load_config
    from server.config_values import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        logging.getLogger(__name__).warning(
            "%s only loads with the flags given, so API changes cannot be saved to it: %s", path.name, exc
        )
        return replace(with_flags, config_path=None)


def settings_from_args(args: argparse.Namespace) -> Settings:
    from server.config import Settings, listen_host, load_config
    from server.config_values import ConfigError
    from server.inference.options import InferenceOptions
    from server.options import StreamOptions
    from server.source_flags import streams_from_flags

    if args.port is not None and not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be between 1 and 65535")
    overrides = _flag_defaults(args)
    config_path: Path | None = getattr(args, "config", None)
    if args.command == "demo":
        sources, loop = list(DEMO_SOURCES), False
    else:
        sources, loop = args.source, args.loop
        if not sources and config_path is None:
            raise ConfigError(
                "serve needs --config FILE or at least one --source (try `segcast demo` for a built-in scene)"
            )
        if loop and not sources:
            raise ConfigError(
                "--loop restarts the video files of --source streams, and none is given; for a stream of the "
                "config file, set loop = true in its [[streams]] table"
            )
    if sources:
        # Checked from their text first: the stream options below (and a config file's) import
        # ultralytics (the tracker's defaults), and with it PyTorch, seconds to tens of them before a
        # mistyped --source was said. A config file may raise the size limit: checked against it below.
        from server.sources.base import MAX_FRAME_SIDE_PX

        early_limit = MAX_FRAME_SIDE_PX if config_path is None else sys.maxsize
        _check_sources(None, sources, streams_from_flags(sources, loop=loop), early_limit)
    file_settings = None
    if config_path is not None:
        base = load_config(config_path, overrides)
        file_settings = _file_only(config_path, base)
    else:
        defaults = StreamOptions.from_mapping(overrides)
        inference = InferenceOptions(imgsz=defaults.imgsz, conf=defaults.conf, iou=defaults.iou)
        base = Settings(model=args.default_model, inference=inference, stream_defaults=defaults)
    taken = {s.stream_id for s in base.streams}
    flag_streams = streams_from_flags(sources, loop=loop, options=base.stream_defaults, taken=taken)
    _check_sources(base, sources, flag_streams, base.max_frame_side)
    if args.command == "demo":
        first, *rest = flag_streams
        flag_streams = (replace(first, options=StreamOptions.from_mapping(DEMO_SHAPES, first.options)), *rest)
    return replace(
        base,
        inference=_with_device(base.inference, args.device),
        host=listen_host(args.host, "--host") if args.host is not None else base.host,
        port=args.port if args.port is not None else base.port,
        model=args.model if args.model is not None else base.model,
        streams=base.streams + flag_streams,
        tls_cert=args.tls_cert if args.tls_cert is not None else base.tls_cert,
        tls_key=args.tls_key if args.tls_key is not None else base.tls_key,
        file_settings=file_settings,
        flag_streams=frozenset(stream.stream_id for stream in flag_streams),
    )


def _with_device(inference: InferenceOptions, device: str | None) -> InferenceOptions:
    """``inference`` on ``--device`` where it is given (over the config file's ``[model] device``)."""
    from server.config_values import ConfigError

    if device is None:
        return inference
    try:
        return replace(inference, device=device)
    except ValueError as exc:
        raise ConfigError(f"--device {device}: {str(exc).partition(', got')[0].partition(': ')[2]}") from None


def _check_sources(
    base: Settings | None, sources: list[str], flag_streams: tuple[StreamConfig, ...], max_frame_side: int
) -> None:
    """Refuse a source URI of the config file or a flag that no retry could ever open (an unknown option,
    no host, a scheme segcast does not read) or a picture over ``max_frame_side``, as the API refuses it,
    naming where it was given. Without ``base``, the flags' alone, before a `Settings` is made, whose
    stream options would import ultralytics.

    `check_uri` reads the text alone, so what may change later (a camera that does not answer yet, a
    file not there yet, a webcam unplugged) still starts, as a stream whose state says what is wrong.
    """
    from server.config import stream_place
    from server.config_values import ConfigError
    from server.sources import SourceError, check_uri
    from server.sources.uri import mask_uri

    name = base.config_path.name if base is not None and base.config_path is not None else ""
    in_file = base.streams if base is not None else ()
    given = [(f"{name}: {stream_place(i, stream.stream_id)}.uri", stream.uri) for i, stream in enumerate(in_file)]
    for value, stream in zip(sources, flag_streams, strict=True):
        shown = mask_uri(value) if value == stream.uri else f"{stream.stream_id}={mask_uri(stream.uri)}"
        given.append((f"--source {shown}", stream.uri))
    for where, uri in given:
        try:
            check_uri(uri, max_frame_side)
        except SourceError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def ssl_context(settings: Settings, names: tuple[str, str] = ("--tls-cert", "--tls-key")) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP; `ConfigError` naming ``names`` if unusable: the
    flags, or the config file's keys (``[server] tls_cert``) where they gave the files (`_tls_keys`).

    Loaded before the model, so a wrong path costs no waiting and never leaves a plain-HTTP server up
    when HTTPS was asked for.
    """
    from server.config_values import ConfigError

    cert, key = settings.tls_cert, settings.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("--tls-cert and --tls-key (server.tls_cert, server.tls_key) go together: give both")
    given = f"{_given(names[0], cert)} / {_given(names[1], key)}"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:  # an OSError too: before it
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"{given}: the key is not the certificate's (give the key it was made with)") from None
        raise ConfigError(
            f"{given}: not a PEM certificate and its key (they begin -----BEGIN CERTIFICATE----- and "
            "-----BEGIN ... PRIVATE KEY-----)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{given}: cannot read them ({exc.strerror or exc})") from None
    return context


def _given(name: str, path: Path) -> str:
    """``--tls-cert PATH`` for a flag, ``[server] tls_cert = "PATH"`` for a config key."""
    return f"{name} {path}" if name.startswith("--") else f'{name} = "{path}"'


def _tls_keys(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    """Where the TLS files came from: their flags, or the config file's keys where no flag gave them."""
    cert = "--tls-cert" if args.tls_cert is not None or settings.tls_cert is None else "[server] tls_cert"
    key = "--tls-key" if args.tls_key is not None or settings.tls_key is None else "[server] tls_key"
    return cert, key


def main(argv: Sequence[str] | None = None) -> int:
    command = None
    try:
        switch_off_ultralytics_telemetry()
        parser = build_parser()
        if not (sys.argv[1:] if argv is None else argv):
            # argparse says only that a command is required: someone trying `segcast` learnt nothing more.
            # The help comes first, its usage line last, with that error (status 2) under it.
            sys.stderr.write(parser.format_help().removeprefix(parser.format_usage()).lstrip("\n") + "\n")
        args = parser.parse_args(argv)
        command = args.command
        _setup_logging(getattr(args, "log_level", "INFO"))
        if command == "export":
            return _export(args)
        if command == "triton":
            from server.triton import cpu_server

            return cpu_server.run(args)
        if command == "split":
            from server.deploy import command as split_command

            return split_command.run(args)
        if command == "history":
            from server.events.history import backup

            return backup.run(args)
        if command == "import-frigate":
            from server.migration import command as migration

            return migration.run(args)
        return _serve(args)
    except KeyboardInterrupt:
        # Ctrl-C while the commands' modules are imported, in an export, a Triton setup, or before the
        # server runs (once it runs, it stops gracefully on SIGINT): the person at the terminal asked for
        # it, and a traceback from wherever the work had got to would only look like a crash. Temporary
        # folders are gone by now (each is removed by its `with` on the way here).
        print("segcast: interrupted", file=sys.stderr)
        if command in ("serve", "demo"):
            _exit_now(EXIT_INTERRUPTED)  # threads the start began may be running
        return EXIT_INTERRUPTED


def _setup_logging(level: str) -> None:
    """Log to stderr at ``level``: each line with its time, or under systemd with its priority (`log_format`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter())
    logging.basicConfig(level=level, handlers=[handler])


def _serve(args: argparse.Namespace) -> int:
    """``serve`` and ``demo``: the exit status of a start that failed; a server that ran exits the process."""
    print("segcast: starting (loading PyTorch takes a few seconds)", flush=True)
    if args.log_level != "DEBUG":
        logging.getLogger("ultralytics").addFilter(_warnings_and_worse)
        # Nine INFO lines per WebRTC viewer: every candidate pair checked, with internal addresses.
        logging.getLogger("aioice").setLevel(logging.WARNING)
    from server.config_values import ConfigError

    try:  # before PyTorch is imported (seconds, tens of them on a busy machine): a typo is said at once
        settings = settings_from_args(args)
        context = ssl_context(settings, _tls_keys(args, settings))
    except ConfigError as exc:
        print(f"segcast: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    from server.inference.models import DeviceError, ModelError
    from server.serve import STARTUP_ERRORS, serve
    from server.streams import StreamOptionsError

    try:
        serve(settings, context, _exit_now, access_log=args.access_log)
    except ListenError as exc:
        print(f"segcast: {exc.named(*_listen_keys(args, settings))}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    except DeviceError as exc:  # the device of the config file, unless --device gave it
        print(f"segcast: {exc.flagged() if args.device is not None else exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    except STARTUP_ERRORS as exc:
        # The manager's ConfigError about a stream's options (raised in serve: settings are there)
        # is caused by the stream's own error, from which the file and the key can be told.
        unfit = exc.__cause__
        in_file = _options_in_file(unfit, args, settings) if isinstance(unfit, StreamOptionsError) else None
        print(f"segcast: {in_file or exc}", file=sys.stderr)
        if isinstance(exc, ModelError) and str(exc).startswith("--model ") and (where := _model_origin(args, settings)):
            print(f"segcast: ({where})", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    _exit_now(0)


def _listen_keys(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    """Where the host and port came from: their flags, or the config file's keys that gave them (one
    that sets the default value too: it is the line to change)."""
    host = "[server] host" if args.host is None and "server.host" in settings.file_keys else "--host"
    port = "[server] port" if args.port is None and "server.port" in settings.file_keys else "--port"
    return host, port


def _model_origin(args: argparse.Namespace, settings: Settings) -> str | None:
    """Where a model given by the config file came from, or None where ``--model`` gave it.

    A model's errors name ``--model``, the flag most people use; someone who started with a config
    file and no such flag should learn which line of theirs to change.
    """
    if args.model is not None or settings.config_path is None:
        return None
    if "model.name" not in settings.file_keys:
        return f"the default model: choose another with --model, or [model] name in {settings.config_path}"
    return f"[model] name in {settings.config_path}; --model overrides it"


def _options_in_file(error: StreamOptionsError, args: argparse.Namespace, settings: Settings) -> str | None:
    """Stream options the loaded model cannot follow (a class it does not know), said where the config
    file gave them, as every other error of the file is (``cams.toml: streams[1] (id 'yard').classes: ...``), with
    where the model came from; None for options the file did not give.

    The stream manager names the stream by its id and the model as ``--model``: all it knows.
    """
    from server.config import stream_place
    from server.sources.uri import mask_uri

    if settings.config_path is None:
        return None
    file_ids = [s.stream_id for s in settings.streams if s.stream_id not in settings.flag_streams]
    places = {"stream_defaults": "stream_defaults"} | {id_: stream_place(i, id_) for i, id_ in enumerate(file_ids)}
    where = places.get(error.stream_id)
    if where is None:
        return None
    model = mask_uri(settings.model)
    if args.model is not None:
        origin = f"with --model {model}"
    elif "model.name" not in settings.file_keys:
        origin = f"with the default model {model}; choose another with [model] name or --model"
    else:
        origin = f"with [model] name {model}; --model overrides it"
    return f"{settings.config_path.name}: {where}.{error.reason} ({origin})"


def _warnings_and_worse(record: logging.LogRecord) -> bool:
    """ultralytics' own INFO lines (a runtime loading, again for each predictor it sets up) repeat what
    segcast says once; a filter, because ultralytics resets its logger's level when it is imported."""
    return record.levelno >= logging.WARNING


def _exit_now(code: int) -> NoReturn:
    """End the process as soon as the server has shut down.

    By now every thread segcast started has been stopped and joined (or, inside a blocked FFmpeg
    call, told to publish nothing more), viewers have been closed and the config file is written.
    What is left is the interpreter's own teardown of PyTorch and its thread pools, which takes
    seconds on a small machine; a service manager waiting for the process after SIGTERM should not.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _export(args: argparse.Namespace) -> int:
    from server.inference.export import ExportError, export_model

    try:
        result = export_model(args.model, args.format, args.out, args.imgsz)
    except ExportError as exc:
        print(f"segcast: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    if args.format == "triton":
        name = result.path.name
        print(
            f"segcast: wrote the Triton model {name} into {result.path.parent} in {result.seconds:.0f} s; serve that "
            f"folder with Triton (segcast triton serve {result.path.parent} on a CPU), then run segcast with "
            f"--model grpc://TRITON-HOST:8001/{name}"
        )
        _say_if_bundled(args.model)
        return 0
    print(f"segcast: wrote {result.path} in {result.seconds:.0f} s; serve it with --model {result.path}")
    _say_if_bundled(args.model)
    return 0


def _say_if_bundled(model: str) -> None:
    """Export's default is segcast's own model, which knows only the generated scenes' shapes, where serve's is
    a real one (`DEFAULT_MODEL`): an export made without --model, served to cameras, would find no one."""
    from server.inference.models import BUNDLED_ALIASES, BUNDLED_MODEL, DEFAULT_MODEL

    named = model in BUNDLED_ALIASES and not Path(model).exists()
    if named or Path(model).resolve() == BUNDLED_MODEL.resolve():
        print(
            "segcast: note: that is the bundled demo model, which knows only the generated scenes' disc, square and "
            f"triangle; for cameras, export a real one: --model {DEFAULT_MODEL} (or your own .pt)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
