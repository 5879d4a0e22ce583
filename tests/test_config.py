"""The config file: TOML for server, model and streams; flags over it; bad keys refused by name."""

from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
from dataclasses import replace
from operator import attrgetter
from pathlib import Path

import pytest

from server.cli import EXIT_STARTUP_ERROR, build_parser, settings_from_args
from server.config import (
    STREAM_ID_PATTERN,
    Settings,
    StreamConfig,
    load_config,
    stream_config,
)
from server.config_values import ConfigError
from server.delivery.viewer import ViewerLimits
from server.options import StreamOptions
from server.persist import ConfigEditedError, ConfigFileState, write_config
from server.source_flags import streams_from_flags
from server.sources import open_source
from server.sources.file import FileSource
from tests.support.cli_in_process import run_cli
from tests.support.ports import free_port

FULL_CONFIG = """
[server]
host = "127.0.0.1"
port = 9000
jpeg_quality = 70
embed_origins = ["https://dash.example.com"]
save_config = true
max_frame_side = 1920
max_viewers = 100
max_scaled_images = 2

[model]
name = "bundled"
device = "cpu"
max_batch = 4
fast_masks = false

[stream_defaults]
conf = 0.3
tracker = "botsort"

[[streams]]
id = "front"
uri = "scene:?seed=1"

[[streams]]
id = "yard"
uri = "/videos/yard.mp4"
loop = true
conf = 0.6
classes = ["disc"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segcast.toml"
    path.write_text(text)
    return path


def test_a_full_config_file_is_read(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, FULL_CONFIG))
    assert (settings.host, settings.port, settings.jpeg_quality) == ("127.0.0.1", 9000, 70)
    assert settings.embed_origins == ("https://dash.example.com",) and settings.save_config
    assert settings.max_frame_side == 1920
    assert settings.viewer_limits == ViewerLimits(max_viewers=100, max_scaled_images=2)
    assert settings.model == "bundled" and settings.inference.max_batch == 4
    assert not settings.inference.fast_masks
    front, yard = settings.streams
    assert front.options.conf == 0.3 and front.options.tracker == "botsort"
    assert yard.loop and yard.options.conf == 0.6 and yard.options.classes == ("disc",)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[server]\nprot = 1\n", "server.prot"),
        ("[server]\nport = 70000\n", "server.port"),
        ('[server]\nport = "80"\n', "server.port"),
        ('[server]\nembed_origins = "x"\n', "server.embed_origins"),
        # Each goes into every page's CSP header: a line break there dropped every page's connection.
        ('[server]\nembed_origins = ["https://a.example\\nhttps://b.example"]\n', "server.embed_origins[0]"),
        ('[server]\nembed_origins = ["*", "https://a.example; script-src *"]\n', "server.embed_origins[1]"),
        ('[server]\nembed_origins = ["https://a.example,https://b.example"]\n', "server.embed_origins[0]"),
        ("[server]\nmax_frame_side = 8\n", "server.max_frame_side"),
        ("[server]\nmax_viewers_per_address = 0\n", "server.max_viewers_per_address"),
        ("[model]\nmax_batch = 0\n", "model.max_batch"),
        ('[model]\ndevice = "gpu7"\n', "model.device"),
        ('[model]\nfast_masks = "no"\n', "model.fast_masks"),
        ("[stream_defaults]\nconf = 2\n", "stream_defaults.conf"),
        ("[cameras]\n", "cameras"),
        ('[[streams]]\nuri = "scene:"\n', "streams[0].id"),
        ('[[streams]]\nid = "a"\n', "streams[0] (id 'a').uri"),
        ('[[streams]]\nid = "a"\nuri = "scene:"\nloop = "yes"\n', "streams[0] (id 'a').loop"),
        ('[[streams]]\nid = "a"\nuri = "scene:"\nspeed = 2\n', "streams[0] (id 'a').speed"),
        ('[[streams]]\nid = "a"\nuri = "x"\n[[streams]]\nid = "a"\nuri = "y"\n', "streams[1] (id 'a').id"),
        ('[auth]\ntokens = ["x"]\n', "auth.tokens"),
        # A request's token is read without white space around it: these could never match.
        ('[auth]\nadmin_tokens = ["admin-token-0123456789 "]\n', "auth.admin_tokens[0]"),
        (
            '[auth]\nviewer_tokens = ["viewer-token-0123456789", "\\tviewer-token-abcdefghij"]\n',
            "auth.viewer_tokens[1]",
        ),
        ("port = = 1\n", "not valid TOML"),
        ('[[streams]]\nid = "a\\n"\nuri = "scene:"\n', "streams[0].id"),  # "$" matched before a newline
        # An empty entry is the config file's own folder: the API would open every file beside it.
        ('[server]\nmedia_dirs = [""]\n', "server.media_dirs"),
        # Paths that cannot be paths were tracebacks, not a line naming the key.
        ('[server]\nmedia_dirs = ["a\\u0000b"]\n', "server.media_dirs"),
        ('[[streams]]\nid = "a"\nuri = "clip\\u0000.mp4"\n', "streams[0] (id 'a').uri"),
        ('[server]\ntls_cert = "~no-such-user-here/c.pem"\ntls_key = "k.pem"\n', "server.tls_cert"),
        ('[events.history]\npath = "a\\u0000b.db"\n', "events.history.path"),
        ('[[events.webhooks]]\nurl = "http://[::1"\n', "events.webhooks[0].url"),
    ],
)
def test_bad_keys_and_values_are_refused_by_name(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=r"^segcast\.toml:? .*" + re.escape(named)):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("table", "key", "most", "setting"),
    [
        ("server", "port", 65535, "port"),
        ("server", "jpeg_quality", 100, "jpeg_quality"),
        ("server", "max_frame_side", 16384, "max_frame_side"),
        ("server", "max_viewers", 100_000, "viewer_limits.max_viewers"),
        ("server", "max_viewers_per_address", 100_000, "viewer_limits.max_viewers_per_address"),
        ("server", "max_scaled_images", 64, "viewer_limits.max_scaled_images"),
        ("model", "max_batch", 64, "inference.max_batch"),
    ],
)
def test_the_top_of_a_whole_numbers_range_is_taken_and_one_more_is_refused_naming_it(
    tmp_path: Path, table: str, key: str, most: int, setting: str
) -> None:
    """The tops written out here, not read from the code: the range a user is promised is the spec."""
    assert attrgetter(setting)(load_config(write(tmp_path, f"[{table}]\n{key} = {most}\n"))) == most
    refused = rf"^segcast\.toml: {table}\.{key}: expected a whole number from \d+ to {most}, got {most + 1}$"
    with pytest.raises(ConfigError, match=refused):
        load_config(write(tmp_path, f"[{table}]\n{key} = {most + 1}\n"))


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ('id = "café"\n'.encode("utf-16"), "segcast.toml is UTF-16: save it as UTF-8"),
        (codecs.BOM_UTF16_BE + 'id = "café"\n'.encode("utf-16-be"), "segcast.toml is UTF-16: save it as UTF-8"),
        ('id = "café"\n'.encode("utf-32"), "segcast.toml is UTF-32: save it as UTF-8"),
        (
            '[[streams]]\r\nid = "café"\r\nuri = "scene:"\r\n'.encode("latin-1"),
            "segcast.toml: not valid TOML (byte 0xe9 is not UTF-8 (at line 2, column 10)): save it as UTF-8",
        ),
        (
            codecs.BOM_UTF8 + "# ½ and ".encode() + b"caf\xe9\n",
            "segcast.toml: not valid TOML (byte 0xe9 is not UTF-8 (at line 1, column 12)): save it as UTF-8",
        ),
    ],
    ids=["UTF-16 LE", "UTF-16 BE", "UTF-32", "Latin-1", "after a UTF-8 BOM and a character of two bytes"],
)
def test_a_file_that_is_not_utf8_says_its_encoding_or_where_the_byte_is(tmp_path: Path, raw: bytes, said: str) -> None:
    """Windows PowerShell 5's `>` writes UTF-16: it was "'utf-8' codec can't decode byte 0xff in position 0"."""
    path = tmp_path / "segcast.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as refusal:
        load_config(path)
    assert str(refusal.value) == said


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_CONFIG)
    args = build_parser().parse_args(
        ["serve", "--config", str(path), "--port", "9100", "--conf", "0.5", "--source", "cam=scene:?seed=5"]
    )
    settings = settings_from_args(args)
    assert settings.port == 9100 and settings.host == "127.0.0.1"
    assert [s.stream_id for s in settings.streams] == ["front", "yard", "cam"]
    front, yard, cam = settings.streams
    assert front.options.conf == 0.5 and cam.options.conf == 0.5, "a flag changes the defaults of every stream"
    assert yard.options.conf == 0.6, "a stream's own value still wins"


def test_saving_an_api_change_writes_the_file_not_the_flags(tmp_path: Path) -> None:
    """A --source stream written into the file made the same command refuse to start ("used twice")."""
    path = write(tmp_path, FULL_CONFIG)
    before = load_config(path)
    argv = ["serve", "--config", str(path), "--port", "9100", "--conf", "0.5", "--source", "cam=scene:?seed=5"]
    settings = settings_from_args(build_parser().parse_args(argv))
    front, yard, cam = settings.streams
    added = StreamConfig("new", "scene:?seed=9", options=StreamOptions.from_mapping({"iou": 0.4}, front.options))
    write_config(settings, [front, yard, cam, added])  # as the API saves them after adding "new"
    saved = load_config(path)
    assert [s.stream_id for s in saved.streams] == ["front", "yard", "new"]
    assert saved.port == before.port and saved.stream_defaults == before.stream_defaults
    assert saved.streams[0] == before.streams[0], "--conf 0.5 is not written into the file's streams"
    assert saved.streams[2].options.iou == 0.4 and saved.streams[2].options.conf == before.stream_defaults.conf
    again = settings_from_args(build_parser().parse_args(argv))  # the same command starts again
    assert [s.stream_id for s in again.streams] == ["front", "yard", "new", "cam"]


def test_an_inference_size_the_model_cannot_take_is_refused_at_start_naming_the_flag() -> None:
    args = build_parser().parse_args(["serve", "--source", "scene:", "--imgsz", "33"])
    with pytest.raises(ConfigError, match=r"^--imgsz: expected a multiple of 32 pixels, got 33 \(try 32\)$"):
        settings_from_args(args)
    args = build_parser().parse_args(["serve", "--source", "scene:", "--imgsz", "416"])
    assert settings_from_args(args).stream_defaults.imgsz == 416


def test_the_device_is_auto_unless_a_flag_or_the_file_says_and_a_save_keeps_the_files(tmp_path: Path) -> None:
    assert settings_from_args(build_parser().parse_args(["serve", "--source", "scene:"])).inference.device == "auto"
    path = write(tmp_path, FULL_CONFIG)  # device = "cpu"
    argv = ["serve", "--config", str(path), "--device", "cuda:1"]
    settings = settings_from_args(build_parser().parse_args(argv))
    assert settings.inference.device == "cuda:1"
    write_config(settings, list(settings.streams))
    assert load_config(path).inference.device == "cpu", "--device is not written into the file"
    with pytest.raises(ConfigError, match=r"^--device gpu: expected auto, cpu, mps or cuda:N$"):
        settings_from_args(build_parser().parse_args(["serve", "--source", "scene:", "--device", "gpu"]))


def test_a_flag_stream_may_not_reuse_a_config_id(tmp_path: Path) -> None:
    args = build_parser().parse_args(["serve", "--config", str(write(tmp_path, FULL_CONFIG)), "--source", "front=x"])
    with pytest.raises(ConfigError, match="front"):
        settings_from_args(args)


@pytest.mark.parametrize(
    ("uri", "stream_id"),
    [
        ("rtsp://admin:s3cret@192.168.1.10:554/stream1", "192-168-1-10-stream1"),
        # Dahua cameras take the credentials in the path; others as path parameters.
        ("rtsp://10.0.0.7/user=admin_password=tlJwpbo6_channel=1_stream=0.sdp", "10-0-0-7-user-admin_password"),
        ("rtsp://cam/;password=hunter2", "cam-password"),
        ("rtsp://admin:hunter2#x@cam/live", "cam-live"),  # a raw '#' the URI's reader takes for the host's end
        # Ids go into MQTT topics and URLs: only the characters configured ids may have.
        ("scene:?seed=%2B1", "scene-1"),
        ("http://[::1/live", "stream"),  # not a URI: its stream fails and says why, under a plain name
        ("/videos/" + "long-" * 20 + ".mp4", ("long-" * 20)[:56].strip("-")),
    ],
)
def test_an_id_named_after_its_source_holds_no_secret_and_is_a_valid_id(uri: str, stream_id: str) -> None:
    [stream] = streams_from_flags([uri])
    assert stream.stream_id == stream_id
    assert STREAM_ID_PATTERN.match(f"{stream_id}-99"), "room for a number to make it unique"


def test_files_whose_names_differ_after_a_hash_get_ids_that_differ_too() -> None:
    """The id kept the path up to its first '#': take#2.mp4 and take#3.mp4 were ``take`` and ``take-2``."""
    uris = ["/videos/take#2.mp4", "/videos/take#3.mp4", "/videos/clip.mp4#rate=max", "file:///videos/cut%231.mp4"]
    assert [stream.stream_id for stream in streams_from_flags(uris)] == ["take-2", "take-3", "clip", "cut-1"]


def test_a_relative_path_with_a_hash_names_the_file_the_source_reads(tmp_path: Path) -> None:
    """Taken from the config file's folder by the source's own '#' rule, and written back as written:
    ``clip #1.mp4#rate=max`` became the file ``clip #1.mp4#rate=max``, which is not there."""
    written = ["clip #1.mp4#rate=max", "videos/a#b=c.mp4", "take#2.mp4"]
    path = write(tmp_path, "".join(f'[[streams]]\nid = "s{n}"\nuri = "{uri}"\n' for n, uri in enumerate(written)))
    settings = load_config(path)
    sources = [open_source(stream.uri) for stream in settings.streams]
    read = [(str(source.path), source.batch) for source in sources if isinstance(source, FileSource)]
    assert read == [
        (f"{tmp_path}/clip #1.mp4", True),
        (f"{tmp_path}/videos/a#b=c.mp4", False),
        (f"{tmp_path}/take#2.mp4", False),
    ]
    write_config(settings, list(settings.streams))
    assert [stream.uri for stream in load_config(path).streams] == [stream.uri for stream in settings.streams]
    for uri in written:
        assert f'uri = "{uri}"' in path.read_text()


def test_saved_config_reads_back_the_same(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, FULL_CONFIG))
    streams = [*settings.streams, StreamConfig("new", 'scene:?seed="9"', options=StreamOptions(iou=0.5))]
    write_config(settings, streams)
    again = load_config(settings.config_path or tmp_path)
    assert list(again.streams) == streams
    assert again.embed_origins == settings.embed_origins and again.inference == settings.inference
    assert again.max_frame_side == settings.max_frame_side == 1920
    assert again.viewer_limits == settings.viewer_limits


def test_saved_config_keeps_an_emoji_and_control_characters(tmp_path: Path) -> None:
    """JSON's ASCII escapes write an emoji as a surrogate pair, which TOML refuses: the file would not load again."""
    settings = load_config(write(tmp_path, FULL_CONFIG))
    streams = [*settings.streams, StreamConfig("horse", '/videos/\U0001f434 "yard"\\\t\x7f.mp4')]
    write_config(settings, streams)
    assert list(load_config(settings.config_path or tmp_path).streams) == streams


def test_a_config_that_would_not_read_back_is_never_written(tmp_path: Path) -> None:
    """The file is replaced only by text that parses back: a lone surrogate has no TOML form."""
    settings = load_config(write(tmp_path, FULL_CONFIG))
    path = settings.config_path or tmp_path
    before = path.read_text()
    with pytest.raises(ConfigError, match="not saved"):
        write_config(settings, [*settings.streams, StreamConfig("bad", "rtsp://camera.local/\ud800")])
    assert path.read_text() == before
    assert not list(tmp_path.glob(".*.partial")), "no half-written file is left behind"


def test_embed_origins_take_every_form_a_browser_matches(tmp_path: Path) -> None:
    origins = ["'self'", "https:", "https://*.example.com", "http://localhost:3000", "grafana.lan", "https://a.b:*/d/"]
    text = "[server]\nembed_origins = [" + ", ".join(f'"{origin}"' for origin in origins) + "]\n"
    assert load_config(write(tmp_path, text)).embed_origins == tuple(origins)


def test_a_token_refused_for_white_space_is_not_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="space") as refused:
        load_config(write(tmp_path, '[auth]\nadmin_tokens = ["\\nsecret-token-0123456789"]\n'))
    assert "secret" not in str(refused.value)


def test_a_save_leaves_a_file_edited_since_it_was_read_as_it_is(tmp_path: Path) -> None:
    """Saving rewrites the file from memory: over a token rotated by hand, it would bring the leaked one back."""
    path = write(tmp_path, FULL_CONFIG)
    settings = load_config(path)
    state = ConfigFileState.of(settings)
    write_config(settings, [*settings.streams, StreamConfig("new", "scene:?seed=9")], state)
    write_config(settings, list(settings.streams), state)  # segcast's own save is no edit
    edited = path.read_text() + '\n[auth]\nadmin_tokens = ["rotated-token-0123456789"]\n'
    path.write_text(edited)
    with pytest.raises(
        ConfigEditedError, match=r"^segcast\.toml was edited, or saved by another program, .* restart segcast"
    ):
        write_config(settings, [*settings.streams, StreamConfig("new", "scene:?seed=9")], state)
    assert path.read_text() == edited


def test_a_read_only_file_is_not_saved_over(tmp_path: Path) -> None:
    """A save replaces the file by a rename, which its own permissions do not stop: one made
    read-only by its admin was rewritten all the same."""
    path = write(tmp_path, FULL_CONFIG)
    path.chmod(0o444)
    with pytest.raises(ConfigError, match=r"^segcast\.toml was not saved: it is read-only: make it writable"):
        write_config(load_config(path), [StreamConfig("new", "scene:?seed=9")])
    assert path.read_text() == FULL_CONFIG


def test_a_save_is_on_disk_before_it_replaces_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Renamed over the old file before its bytes were on disk, a power cut could leave an empty file."""
    path = write(tmp_path, FULL_CONFIG)
    settings = load_config(path)
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(descriptor: int) -> None:
        steps.append("fsync " + ("folder" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "file"))
        real_fsync(descriptor)

    def replace(self: Path, target: Path) -> Path:
        steps.append("replace")
        return real_replace(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    write_config(settings, [StreamConfig("new", "scene:?seed=9")])
    assert steps == ["fsync file", "replace", "fsync folder"]


def test_saving_through_a_symlink_replaces_the_file_it_points_to(tmp_path: Path) -> None:
    real = tmp_path / "etc" / "segcast.toml"
    real.parent.mkdir()
    real.write_text(FULL_CONFIG)
    link = tmp_path / "segcast.toml"
    link.symlink_to(real)
    settings = load_config(link)
    write_config(settings, [StreamConfig("new", "scene:?seed=9")])
    assert link.is_symlink() and link.resolve() == real
    assert [s.stream_id for s in load_config(real).streams] == ["new"]
    assert not list(tmp_path.glob(".*.partial")) and not list(real.parent.glob(".*.partial"))


def test_a_file_a_windows_editor_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text("\ufeff[server]\nport = 8081\n", encoding="utf-8")
    assert load_config(path).port == 8081


def test_saving_needs_a_config_file() -> None:
    with pytest.raises(ConfigError, match="--config"):
        write_config(Settings(), [])


def test_bad_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--config", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == EXIT_STARTUP_ERROR
    assert result.stderr.strip().splitlines() == [
        "segcast: segcast.toml: server.port: expected a whole number from 1 to 65535, got 0"
    ]


def test_missing_config_file_names_the_flag(tmp_path: Path) -> None:
    args = build_parser().parse_args(["serve", "--config", str(tmp_path / "none.toml")])
    with pytest.raises(ConfigError, match=r"^--config .*none\.toml: cannot read it"):
        settings_from_args(args)


def test_listening_beyond_this_machine_without_tokens_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[server]\nhost = "0.0.0.0"\n')
    for name in [name for name in os.environ if name.startswith("SEGCAST_")]:
        monkeypatch.delenv(name)
    exited = run_cli(capfd, "serve", "--config", str(path), "--port", str(free_port()))
    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line.startswith("segcast: listening on 0.0.0.0, beyond this machine,"), exited.err


def test_auth_settings_are_read(tmp_path: Path) -> None:
    token = "admin-token-0123456789abcdef"
    assert load_config(write(tmp_path, f'[auth]\nadmin_tokens = ["{token}"]\n')).admin_tokens == (token,)
    assert load_config(write(tmp_path, 'auth = "off"\n')).auth_off


def test_the_demo_shows_a_line_and_a_zone_on_its_first_scene_and_flags_still_apply() -> None:
    settings = settings_from_args(build_parser().parse_args(["demo", "--conf", "0.4"]))
    first, second = settings.streams
    assert [line.name for line in first.options.lines] == ["middle"]
    assert [zone.name for zone in first.options.zones] == ["corner"]
    assert not second.options.lines and not second.options.zones, "the second scene stays plain"
    assert first.options.conf == second.options.conf == 0.4


def test_saving_keeps_a_streams_own_value_that_a_flag_also_gives_every_other_stream(tmp_path: Path) -> None:
    """The stream's own conf = 0.5 was compared with --conf 0.5, not with the file's 0.3, and dropped."""
    path = write(
        tmp_path,
        '[stream_defaults]\nconf = 0.3\nimgsz = 320\ntracker = "bytetrack"\n\n'
        '[[streams]]\nid = "yard"\nuri = "scene:?seed=1"\nconf = 0.5\nimgsz = 640\ntracker = "botsort"\n\n'
        '[[streams]]\nid = "gate"\nuri = "scene:?seed=2"\n',
    )
    before = load_config(path)
    argv = ["serve", "--config", str(path), "--conf", "0.5", "--imgsz", "640", "--tracker", "botsort"]
    running = settings_from_args(build_parser().parse_args(argv))
    yard, gate = running.streams
    assert (gate.options.conf, gate.options.imgsz, gate.options.tracker) == (0.5, 640, "botsort")
    added = StreamConfig("new", "scene:?seed=9", options=StreamOptions.from_mapping({"iou": 0.4}, gate.options))
    write_config(running, [yard, gate, added])  # as the API saves them after adding "new"
    saved = load_config(path)
    assert saved.streams[:2] == before.streams, "own values kept, flag values not written"
    new = saved.streams[2].options
    assert (new.iou, new.conf, new.imgsz, new.tracker) == (0.4, 0.3, 320, "bytetrack"), "the file's defaults"


def test_saving_writes_a_change_made_through_the_api_under_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[stream_defaults]\nconf = 0.3\n\n[[streams]]\nid = "gate"\nuri = "scene:"\n')
    running = settings_from_args(build_parser().parse_args(["serve", "--config", str(path), "--conf", "0.5"]))
    [gate] = running.streams
    changed = replace(gate, options=StreamOptions.from_mapping({"conf": 0.4, "tracker": "bytetrack"}, gate.options))
    write_config(running, [changed])
    [saved] = load_config(path).streams
    assert (saved.options.conf, saved.options.tracker) == (0.4, "bytetrack")


def test_a_tracker_flag_is_a_layer_over_the_files_defaults(tmp_path: Path) -> None:
    """--tracker was merged into [stream_defaults], beside settings only the file's tracker has."""
    path = write(
        tmp_path,
        '[stream_defaults]\ntracker_settings = { min_overlap = 0.2 }\n\n[[streams]]\nid = "yard"\nuri = "scene:"\n',
    )
    running = settings_from_args(build_parser().parse_args(["serve", "--config", str(path), "--tracker", "bytetrack"]))
    assert running.streams[0].options.tracker == "bytetrack"
    assert running.streams[0].options.tracker_settings == ()
    write_config(running, list(running.streams))
    assert load_config(path).streams[0].options.tracker_settings == (("min_overlap", 0.2),), "the file is kept"


def test_a_stream_naming_the_files_tracker_keeps_its_settings_under_another_tracker_flag(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[stream_defaults]\ntracker = "bytetrack"\ntracker_settings = { track_buffer = 60 }\n\n'
        '[[streams]]\nid = "yard"\nuri = "scene:"\ntracker = "bytetrack"\n\n'
        '[[streams]]\nid = "gate"\nuri = "scene:?seed=2"\n',
    )
    running = settings_from_args(build_parser().parse_args(["serve", "--config", str(path), "--tracker", "botsort"]))
    yard, gate = running.streams
    assert (yard.options.tracker, yard.options.tracker_settings) == ("bytetrack", (("track_buffer", 60),))
    assert (gate.options.tracker, gate.options.tracker_settings) == ("botsort", ())


def test_a_tracker_flag_over_a_streams_own_tracker_settings_says_how_to_keep_its_tracker(tmp_path: Path) -> None:
    path = write(tmp_path, '[[streams]]\nid = "yard"\nuri = "scene:"\ntracker_settings = { min_overlap = 0.2 }\n')
    args = build_parser().parse_args(["serve", "--config", str(path), "--tracker", "bytetrack"])
    with pytest.raises(
        ConfigError, match=r"streams\[0\] \(id 'yard'\)\.tracker_settings\.min_overlap: .* tracker = \"segtrack\""
    ):
        settings_from_args(args)


def test_the_models_own_size_over_a_default_size_is_saved_and_read_back(tmp_path: Path) -> None:
    """A PATCH of {"imgsz": null} was saved as nothing: the stream came back at the default's 640."""
    path = write(tmp_path, '[stream_defaults]\nimgsz = 640\n\n[[streams]]\nid = "yard"\nuri = "scene:"\n')
    settings = load_config(path)
    [yard] = settings.streams
    patched = replace(yard, options=StreamOptions.from_mapping({"imgsz": None}, yard.options))
    write_config(settings, [patched])
    assert 'imgsz = "model"' in path.read_text()
    assert load_config(path).streams[0].options.imgsz is None
    assert load_config(path).stream_defaults.imgsz == 640


def test_imgsz_model_means_the_models_own_size_and_other_words_are_refused(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, '[[streams]]\nid = "a"\nuri = "scene:"\nimgsz = "model"\n'))
    assert settings.streams[0].options.imgsz is None
    with pytest.raises(
        ConfigError, match=r"streams\[0\] \(id 'a'\)\.imgsz: .* or 'model' for the model's own size, got 'auto'"
    ):
        load_config(write(tmp_path, '[[streams]]\nid = "a"\nuri = "scene:"\nimgsz = "auto"\n'))


PINNED_CONFIG = """[stream_defaults]
tracker = "bytetrack"
tracker_settings = { track_buffer = 60 }

[[streams]]
id = "pinned"
uri = "scene:"
conf = 0.25
imgsz = "model"
tracker = "bytetrack"

[[streams]]
id = "plain"
uri = "scene:?seed=2"
"""


def test_a_stream_that_sets_the_files_default_keeps_it_against_a_flag_after_a_save(tmp_path: Path) -> None:
    """Its options were written where they differed from [stream_defaults]: equal to them, they were
    dropped, and the next start with the same flags gave it the flags' values."""
    path = write(tmp_path, PINNED_CONFIG)
    before = load_config(path)
    argv = ["serve", "--config", str(path), "--conf", "0.5", "--imgsz", "640", "--tracker", "botsort"]
    running = settings_from_args(build_parser().parse_args(argv))
    write_config(running, list(running.streams))  # a save that changes nothing of these streams
    again = settings_from_args(build_parser().parse_args(argv))
    assert again.streams == running.streams, "the same flags start each stream as it ran"
    pinned = again.streams[0].options
    assert (pinned.conf, pinned.imgsz, pinned.tracker, pinned.tracker_settings) == (
        0.25,
        None,
        "bytetrack",
        (("track_buffer", 60),),
    )
    assert load_config(path).streams == before.streams, "no flag's value is written"
    tables = PINNED_CONFIG.partition("[[streams]]")[2].strip()
    assert path.read_text().partition("[[streams]]")[2].strip() == tables, "each table as the file gave it"
    plain = load_config(write(tmp_path, PINNED_CONFIG))
    write_config(plain, list(plain.streams))
    assert path.read_text().partition("[[streams]]")[2].strip() == tables


def test_a_stream_the_api_gives_the_files_tracker_is_saved_with_it_under_another_tracker_flag(tmp_path: Path) -> None:
    """It was saved with no tracker line, and the next start gave it --tracker's botsort."""
    path = write(tmp_path, PINNED_CONFIG)
    argv = ["serve", "--config", str(path), "--tracker", "botsort"]
    running = settings_from_args(build_parser().parse_args(argv))
    body = {"id": "api", "uri": "scene:?seed=3", "tracker": "bytetrack", "conf": 0.5}
    added = stream_config(body, running.stream_defaults, "body")  # as POST /api/streams makes it
    same = stream_config({"id": "same", "uri": "scene:?seed=4", "conf": 0.25}, running.stream_defaults, "body")
    write_config(running, [*running.streams, added, same])
    api, kept = settings_from_args(build_parser().parse_args(argv)).streams[2:]
    assert (api.options.tracker, api.options.conf) == ("bytetrack", 0.5)
    assert api.options.tracker_config() == added.options.tracker_config(), "the settings it ran with"
    assert kept.options == same.options and "tracker" not in path.read_text().rpartition("[[streams]]")[2]


def test_a_change_of_a_streams_tracker_settings_alone_leaves_its_tracker_following_the_defaults(
    tmp_path: Path,
) -> None:
    """A PATCH of track_buffer wrote the tracker too: the stream stopped following --tracker for good."""
    path = write(
        tmp_path,
        '[stream_defaults]\ntracker = "bytetrack"\n\n[[streams]]\nid = "a"\nuri = "scene:"\n'
        "tracker_settings = { track_buffer = 60 }\n",
    )
    for flags in ([], ["--tracker", "botsort"]):
        argv = ["serve", "--config", str(path), *flags]
        running = settings_from_args(build_parser().parse_args(argv))
        [a] = running.streams
        patched = {"tracker_settings": {"track_buffer": 90}}
        write_config(running, [replace(a, options=StreamOptions.from_mapping(patched, a.options))])
        assert "tracker =" not in path.read_text().partition("[[streams]]")[2], flags
        for again, tracker in (([], "bytetrack"), (["--tracker", "botsort"], "botsort")):
            [reloaded] = settings_from_args(build_parser().parse_args(["serve", "--config", str(path), *again])).streams
            assert (reloaded.options.tracker, dict(reloaded.options.tracker_settings)["track_buffer"]) == (tracker, 90)


def test_a_stream_added_under_the_id_of_a_removed_one_of_the_file_is_saved_as_a_new_stream(tmp_path: Path) -> None:
    """The removed stream's table set conf = 0.5 (as --conf did): the new one, which took --conf's
    0.5, was saved with it, and kept it at a start without the flag."""
    path = write(tmp_path, '[[streams]]\nid = "a"\nuri = "scene:?seed=1"\nconf = 0.5\n')
    running = settings_from_args(build_parser().parse_args(["serve", "--config", str(path), "--conf", "0.5"]))
    state = ConfigFileState.of(running)
    write_config(running, [], state)  # DELETE a ?persist=1
    state.added.add("a")  # POST /api/streams {"id": "a", ...}, as the API records it
    new = stream_config({"id": "a", "uri": "scene:?seed=9"}, running.stream_defaults, "body")
    write_config(running, [new], state)
    assert [s.options.conf for s in load_config(path).streams] == [0.25], "the file's default, not the flag's"


RELATIVE_CONFIG = """
[server]
media_dirs = ["videos", "./clips"]

[model]
name = "models/my.pt"

[[streams]]
id = "a"
uri = "clip.mp4"

[[streams]]
id = "b"
uri = "file:videos/b%20c.mp4#rate=max"

[[streams]]
id = "c"
uri = "videos/c.mp4#rate=max"

[[streams]]
id = "d"
uri = "scene:?seed=2"

[[streams]]
id = "e"
uri = "/videos/e.mp4"

[events.history]
path = "ev.db"
"""


def test_relative_paths_in_the_file_are_taken_from_its_folder_and_saved_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream's uri and the model were taken from the working folder, unlike every other path."""
    folder = tmp_path / "etc"
    for sub in ("videos", "clips", "models"):
        (folder / sub).mkdir(parents=True)
    (folder / "models" / "my.pt").write_bytes(b"")
    path = folder / "segcast.toml"
    path.write_text(RELATIVE_CONFIG)
    monkeypatch.chdir(tmp_path)  # started from another folder than the file's
    settings = load_config(Path("etc/segcast.toml"))
    root = folder.resolve()
    assert settings.model == str(root / "models" / "my.pt")
    assert [s.uri for s in settings.streams] == [
        str(root / "clip.mp4"),
        f"file://{root}/videos/b%20c.mp4#rate=max",
        f"{root}/videos/c.mp4#rate=max",
        "scene:?seed=2",
        "/videos/e.mp4",
    ]
    assert settings.media_dirs == (root / "videos", root / "clips")
    write_config(settings, list(settings.streams))
    text = path.read_text()
    for line in (
        'media_dirs = ["videos", "./clips"]',
        'name = "models/my.pt"',
        'uri = "clip.mp4"',
        'uri = "file:videos/b%20c.mp4#rate=max"',
        'uri = "videos/c.mp4#rate=max"',
        'path = "ev.db"',
    ):
        assert line in text, f"{line} is written as the file wrote it"
    assert load_config(path).streams == settings.streams


def test_a_relative_uri_to_a_symlink_is_opened_through_it_and_saved_as_written(tmp_path: Path) -> None:
    """``latest.mp4``, a link rotated each day, was frozen to the file it named at the start, and a
    stream of that file was saved under the other's name."""
    (tmp_path / "clips").mkdir()
    for name in ("mon.mp4", "tue.mp4", "v1.pt"):
        (tmp_path / "clips" / name).write_bytes(b"")
    (tmp_path / "latest.mp4").symlink_to("clips/mon.mp4")
    (tmp_path / "current.pt").symlink_to("clips/v1.pt")
    path = write(
        tmp_path,
        '[model]\nname = "current.pt"\n\n[[streams]]\nid = "latest"\nuri = "latest.mp4"\n\n[[streams]]\n'
        'id = "monday"\nuri = "clips/mon.mp4"\n\n[[streams]]\nid = "other"\nuri = "./clips/../latest.mp4"\n',
    )
    settings = load_config(path)
    latest, monday = str(tmp_path / "latest.mp4"), str(tmp_path / "clips" / "mon.mp4")
    assert [s.uri for s in settings.streams] == [latest, monday, latest]
    assert settings.model == str(tmp_path / "current.pt")
    write_config(settings, list(settings.streams))
    text = path.read_text()
    for line in ('uri = "latest.mp4"', 'uri = "clips/mon.mp4"', 'uri = "./clips/../latest.mp4"', 'name = "current.pt"'):
        assert line in text


def test_a_model_name_that_is_not_a_file_beside_the_config_stays_a_name(tmp_path: Path) -> None:
    """``yolov8n-seg.pt`` is a name ultralytics publishes (downloaded), not a file of the config's folder."""
    text = '[model]\nname = "yolov8n-seg.pt"\n'
    assert load_config(write(tmp_path, text)).model == "yolov8n-seg.pt"
    assert load_config(write(tmp_path, '[model]\nname = "grpc://triton:8001/m"\n')).model == "grpc://triton:8001/m"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", r"^--source '': empty"),
        ("   ", r"^--source '   ': empty"),
        ("cam=", r"^--source 'cam=': no source after the id"),
        ("Front.Door=/videos/a.mp4", r"^--source: 'Front\.Door' before the '=' is not a valid stream id"),
        ("front door=/videos/a.mp4", r"^--source: 'front door' before the '=' is not a valid stream id"),
        ("x" * 65 + "=/videos/a.mp4", r"^--source: 'x{65}' before the '=' is not a valid stream id"),
    ],
)
def test_a_source_flag_with_a_bad_id_or_no_uri_is_refused_naming_the_flag(value: str, message: str) -> None:
    args = build_parser().parse_args(["serve", "--source", value])
    with pytest.raises(ConfigError, match=message):
        settings_from_args(args)


def test_an_equals_sign_inside_a_uri_is_not_taken_for_an_id() -> None:
    values = ["rtsp://user:pa=ss@cam/live", "scene:?seed=3", "door=rtsp://u:p=x@cam/s", "./a=b.mp4"]
    streams = streams_from_flags(values)
    assert [(s.stream_id, s.uri) for s in streams] == [
        ("cam-live", "rtsp://user:pa=ss@cam/live"),
        ("scene-3", "scene:?seed=3"),
        ("door", "rtsp://u:p=x@cam/s"),
        ("a-b", "./a=b.mp4"),
    ]


def test_loop_without_a_source_stream_says_where_to_set_it(tmp_path: Path) -> None:
    """--loop was silently ignored for the config file's streams."""
    path = write(tmp_path, '[[streams]]\nid = "yard"\nuri = "/videos/yard.mp4"\n')
    with pytest.raises(ConfigError, match=r"^--loop .*--source.* loop = true"):
        settings_from_args(build_parser().parse_args(["serve", "--config", str(path), "--loop"]))
    argv = ["serve", "--config", str(path), "--loop", "--source", "/videos/a.mp4"]
    yard, a = settings_from_args(build_parser().parse_args(argv)).streams
    assert a.loop and not yard.loop


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[streams]]\nid = "a"\nuri = "scene:"\nauth = "off"\n', "streams[0] (id 'a').auth"),
        ('[server]\nhost = "0.0.0.0"\nauth = "off"\n', "server.auth"),
    ],
)
def test_auth_written_after_a_table_is_refused_saying_where_it_belongs(tmp_path: Path, text: str, where: str) -> None:
    """Appended to a file, as the error for a host without tokens suggests, it lands in the last table."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    assert str(refused.value).startswith(f"segcast.toml: {where}: auth is a top-level key; write it before the first [")


def test_a_bad_value_in_a_stream_names_the_streams_id(tmp_path: Path) -> None:
    """A file of many cameras is read by id: "streams[7].conf" sent its reader counting tables."""
    text = '[[streams]]\nid = "yard"\nuri = "scene:"\n\n[[streams]]\nid = "gate"\nuri = "scene:"\nconf = 5\n'
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    assert str(refused.value) == "segcast.toml: streams[1] (id 'gate').conf: expected a number from 0.01 to 1, got 5"


#: What the unknown-key error of a ``[[streams]]`` table lists: its own keys, then the stream options.
STREAM_TABLE_KEYS = (
    "id, uri, loop, options, agnostic_nms, class_filters, classes, conf, ignore_zones, imgsz, iou, lines, max_area, "
    "max_det, min_area, process_fps, tracker, tracker_settings, zones"
)


@pytest.mark.parametrize(
    ("text", "where", "home"),
    [
        ('[[streams]]\nid = "a"\nuri = "scene:"\nsave_config = true\n', "streams[0] (id 'a').save_config", "[server]"),
        ('[[streams]]\nid = "a"\nuri = "scene:"\nmax_viewers = 50\n', "streams[0] (id 'a').max_viewers", "[server]"),
        ('[[streams]]\nid = "a"\nuri = "scene:"\nhalf = true\n', "streams[0] (id 'a').half", "[model]"),
        ('[[streams]]\nid = "a"\nuri = "scene:"\nadmin_tokens = []\n', "streams[0] (id 'a').admin_tokens", "[auth]"),
        ("[server]\nport = 8081\nconf = 0.4\n", "server.conf", "[stream_defaults] or [[streams]]"),
        ("[stream_defaults]\nconf = 0.4\nloop = true\n", "stream_defaults.loop", "[[streams]]"),
        ("[events.history]\nmax_mb = 10\nmax_viewers = 50\n", "events.history.max_viewers", "[server]"),
        # Keys no slip of the table's own: another table that has them is only a possibility.
        ('[[streams]]\nid = "a"\npath = "clip.mp4"\n', "streams[0] (id 'a').path", "[events.history]"),
        ('[[streams]]\nid = "a"\nname = "front"\n', "streams[0] (id 'a').name", "[model] or [[events.webhooks]]"),
        ('[server]\nurl = "x"\n', "server.url", "[[events.webhooks]]"),
    ],
)
def test_a_key_of_another_table_is_unknown_here_and_may_belong_there(
    tmp_path: Path, text: str, where: str, home: str
) -> None:
    """A key appended at the end of the file lands in its last table: "unknown key" alone did not say why;
    "write it there" alone sent a typo (``name`` in a stream) to a table that happens to have that key."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    message = str(refused.value)
    assert message.startswith(f"segcast.toml: {where}: unknown key; known keys are ")
    assert message.endswith(
        f"; if it is meant for {home}, write it there: a key after a [table] header belongs to that table"
    )


@pytest.mark.parametrize(
    ("text", "place", "hint"),
    [
        ("[model]\nname = bundled\n", "line 2, column 8", 'text values need quotes: name = "bundled"'),
        (
            '[[streams]]\nid = "a"\nuri = scene:?seed=1  # the demo scene\n',
            "line 3, column 7",
            'text values need quotes: uri = "scene:?seed=1"',
        ),
        (
            '[[streams]]\nid = "a"\nuri = "scene:"\nzones = [{name = door, points = [[0, 0], [5, 0], [0, 5]]}]\n',
            "line 4, column 18",
            'text values need quotes: name = "door"',
        ),
        (
            '[[streams]]\nid = "a"\nuri = "scene:"\nloop = True\n',
            "line 4, column 8",
            "TOML writes true in lower case: loop = true",
        ),
    ],
    ids=["word", "uri-with-comment", "in-an-inline-table", "capital-true"],
)
def test_an_unquoted_text_value_is_told_to_take_quotes(tmp_path: Path, text: str, place: str, hint: str) -> None:
    """``name = bundled`` was "not valid TOML (Invalid value ...)": nothing said that text takes quotes."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    assert str(refused.value) == f"segcast.toml: not valid TOML (Invalid value (at {place})): {hint}"


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("port = = 1\n", "line 1, column 8"),
        ("[server]\nport = .5\n", "line 2, column 8"),
        ("[model]\nname =\n", "line 2, column 7"),
    ],
)
def test_an_invalid_value_that_is_no_word_is_said_as_tomllib_says_it(tmp_path: Path, text: str, place: str) -> None:
    """Only a value that reads as a word is told to take quotes: the rest keep tomllib's own words."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    assert str(refused.value) == f"segcast.toml: not valid TOML (Invalid value (at {place}))"


def test_a_top_level_key_of_a_table_says_which_tables_have_it(tmp_path: Path) -> None:
    """No header is to blame at the top level: the tables that have the key are named, as where it may go."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, "port = 8081\n"))
    assert str(refused.value) == (
        "segcast.toml: port: unknown key; known keys are server, model, stream_defaults, streams, auth, events; "
        "if it is meant for [server] or [events.mqtt], write it there"
    )


@pytest.mark.parametrize(
    ("text", "where", "known", "meant"),
    [
        ('[[streams]]\nid = "a"\nurl = "scene:?seed=1"\n', "streams[0] (id 'a').url", STREAM_TABLE_KEYS, "uri"),
        ('[[streams]]\nid = "a"\nuri = "scene:"\nlop = true\n', "streams[0] (id 'a').lop", STREAM_TABLE_KEYS, "loop"),
        ("[server]\nprot = 8081\n", "server.prot", None, "port"),
        ('[model]\nnam = "bundled"\n', "model.nam", "name, device, max_batch, half, fast_masks", "name"),
        ('[[stream]]\nuri = "scene:"\n', "stream", "server, model, stream_defaults, streams, auth, events", "streams"),
    ],
)
def test_a_slip_of_a_tables_own_key_names_the_key_meant(
    tmp_path: Path, text: str, where: str, known: str | None, meant: str
) -> None:
    """``url`` for ``uri`` was told to go to [[events.webhooks]], a table that happens to have a ``url``."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    message = str(refused.value)
    assert message.startswith(f"segcast.toml: {where}: unknown key; known keys are {known or ''}")
    said, _, offered = message.partition(f"; did you mean {meant!r}?")
    assert said and "write it there" not in said, "the table's own key is said first"
    assert offered in (
        "",
        " If it is meant for [[events.webhooks]], write it there: a key after a [table] header belongs to that table",
    ), offered


def test_a_key_of_another_table_close_to_one_of_its_own_says_both(tmp_path: Path) -> None:
    """``max_batch`` appended after a [[streams]] table was only asked whether it meant ``max_det``."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, '[[streams]]\nid = "a"\nuri = "scene:"\nmax_batch = 8\n'))
    assert str(refused.value).endswith(
        "; did you mean 'max_det'? If it is meant for [model], write it there: a key after a [table] header "
        "belongs to that table"
    ), refused.value


def test_an_unknown_key_of_a_stream_from_the_api_lists_the_streams_own_keys() -> None:
    """A stream's table has id, uri and loop besides its options: "known options are ..." left them out."""
    with pytest.raises(ConfigError) as refused:
        stream_config({"id": "a", "uri": "scene:", "lop": True}, StreamOptions(), "body")
    assert str(refused.value) == f"body.lop: unknown key; known keys are {STREAM_TABLE_KEYS}; did you mean 'loop'?"
    with pytest.raises(ConfigError) as nested:
        stream_config({"id": "a", "uri": "scene:", "options": {"cnof": 0.3}}, StreamOptions(), "body")
    assert str(nested.value).endswith("; did you mean 'conf'?")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nhost = 5\n", "server.host: expected text, got 5"),
        ("[model]\nname = true\n", "model.name: expected text, got true"),
        (
            "[server]\nport = true\n",
            "server.port: expected a whole number from 1 to 65535, got true, which is not a number",
        ),
        ('[server]\nsave_config = "yes"\n', "server.save_config: expected true or false, got 'yes'"),
        ("[auth]\nviewer_tokens = true\n", "auth.viewer_tokens: expected a list of non-empty strings, got true"),
        ('[server]\nmedia_dirs = [""]\n', "server.media_dirs: expected a list of non-empty strings, got ['']"),
    ],
)
def test_a_value_of_the_wrong_kind_is_said_in_the_files_words(tmp_path: Path, text: str, message: str) -> None:
    """Said as TOML says it: "expected a str, got True" spoke Python to someone writing TOML."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    assert str(refused.value) == f"segcast.toml: {message}"


def test_a_stream_without_an_id_is_told_its_id_is_missing() -> None:
    """A POST without ``id`` said "body.id: expected 1 to 64 letters..., got None", as if one was given."""
    with pytest.raises(ConfigError) as missing:
        stream_config({"uri": "scene:?seed=1"}, StreamOptions(), "body")
    assert str(missing.value) == (
        "body.id: missing: give the stream an id of 1 to 64 ASCII letters (a-z, A-Z), digits, '-' or '_'"
    )
    with pytest.raises(ConfigError, match=r"^body\.id: expected 1 to 64 ASCII letters .*, got None$"):
        stream_config({"id": None, "uri": "scene:?seed=1"}, StreamOptions(), "body")


@pytest.mark.parametrize("bad", ["Tür", "café"])
def test_a_stream_id_with_a_letter_outside_ascii_is_told_only_ascii_letters_are_taken(bad: str) -> None:
    """It said "expected 1 to 64 letters, digits, '-' or '_', got 'Tür'": to a German user, ü is a letter."""
    with pytest.raises(ConfigError) as refused:
        stream_config({"id": bad, "uri": "scene:?seed=1"}, StreamOptions(), "body")
    assert str(refused.value) == (
        "body.id: expected 1 to 64 ASCII letters (a-z, A-Z), digits, '-' or '_' (ids go into URLs and MQTT topics),"
        f" got {bad!r}"
    )


def test_the_files_host_is_taken_as_the_flag_is(tmp_path: Path) -> None:
    """``--host`` took ``[::1]`` and refused an empty host; the file's ``host`` failed to bind the first
    ("Name or service not known") and listened on every interface for the second."""
    assert load_config(write(tmp_path, '[server]\nhost = "[::1]"\n')).host == "::1"
    with pytest.raises(ConfigError, match=r"^segcast\.toml: server\.host: no address given; give 127\.0\.0\.1"):
        load_config(write(tmp_path, '[server]\nhost = ""\n'))
