"""How a source's name is read: the mistakes people make typing one are named for what they are.

A webcam by its stable udev name, a file URL one slash short, a camera's address without its scheme
and a '~' the shell did not expand each read as something else (a file, another host's file, an
unknown scheme), failed with a reason that sent people looking for the wrong mistake, and some showed
the camera's password. Each is told here, the same way by the command line and the API.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server.cli import build_parser, settings_from_args
from server.config import StreamConfig
from server.config_values import ConfigError
from server.http.access.policy import SourcePolicy, SourceRefused, UnusableSource
from server.sources import SourceError, StreamState, open_source
from server.sources.file import FileSource
from server.sources.webcam import WebcamSource
from tests.support.reader_probe import ReaderProbe

Start = Callable[..., Awaitable[TestClient]]

PASSWORD = "S3cret-cam-pw"
BY_ID = "/dev/v4l/by-id/usb-Segcast_Test_Cam_0123-video-index0"
BY_PATH = "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:1:1.0-video-index0"


def first_frame_error(uri: str) -> str:
    """Why ``uri`` does not play: `open_source`'s refusal, or its first attempt's, made in the reader's thread."""
    with pytest.raises((SourceError, ConnectionError)) as failure:
        next(open_source(uri).open(threading.Event()))
    return str(failure.value)


# -- webcams by their stable names --------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="V4L2 devices are Linux's")
@pytest.mark.parametrize("uri", [BY_ID, BY_PATH, f"{BY_ID}#format=mjpeg"])
def test_a_webcam_by_its_udev_name_is_a_camera_that_waits_to_be_plugged_in(uri: str) -> None:
    """It was a file: "no such file" unplugged, "not a regular file" plugged in, never retried."""
    assert isinstance(open_source(uri), WebcamSource)
    device = uri.partition("#")[0]
    with ReaderProbe(uri) as probe:
        status = probe.wait_state(StreamState.RECONNECTING, 5)
    assert status.error == f"no camera at {device} (unplugged?)"


def test_a_webcam_by_its_udev_name_needs_allow_devices_through_the_api(tmp_path: Path) -> None:
    for policy in (SourcePolicy(), SourcePolicy.of(SourcePolicy().schemes, [tmp_path], allow_devices=False)):
        for uri in (BY_ID, BY_PATH, "/dev/video0"):
            with pytest.raises(SourceRefused, match="allow_devices"):
                policy.check(uri)
    allowing = SourcePolicy.of(SourcePolicy().schemes, [], allow_devices=True)
    for uri in (BY_ID, BY_PATH):
        allowing.check(uri)


def test_a_device_named_as_a_file_is_never_played_as_one(tmp_path: Path) -> None:
    """A device under another name (a udev link of one's own, ``/dev//video0``) reads as a file: the API
    holds it to media_dirs, which it resolves out of, and the file reader refuses it, saying how a camera
    is named."""
    link = tmp_path / "frontcam"
    link.symlink_to("/dev/null")  # a character device, as a camera is
    policy = SourcePolicy.of(SourcePolicy().schemes, [tmp_path], allow_devices=False)
    for uri in (str(link), f"file://{link}", "/dev//video0", "file:///dev/video0"):
        with pytest.raises(SourceRefused, match="only files inside"):
            policy.check(uri)
    assert first_frame_error(str(link)) == (
        f"{link} is a device, not a video file (a camera is given as /dev/videoN, /dev/v4l/by-id/... or webcam:N)"
    )


# -- file URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "host", "meant"),
    [
        ("file://tmp/you/a.mp4", "tmp", "file:///tmp/you/a.mp4"),
        ("file://host/tmp/x.mp4#rate=max", "host", "file:///host/tmp/x.mp4"),
    ],
)
def test_a_file_url_naming_a_host_is_refused_with_the_url_meant(uri: str, host: str, meant: str) -> None:
    """Its host was dropped: ``file://tmp/you/a.mp4`` looked for /you/a.mp4, ``file://host/tmp/x.mp4``
    played this machine's /tmp/x.mp4."""
    told = f"{uri!r} names host {host!r}; write {meant}"
    with pytest.raises(SourceError) as failure:
        open_source(uri)
    assert str(failure.value) == told
    policy = SourcePolicy.of(SourcePolicy().schemes, [Path("/tmp")], allow_devices=False)
    with pytest.raises(UnusableSource) as refused:
        policy.check(uri)
    assert str(refused.value) == told


def test_a_file_url_naming_a_host_stops_the_start_naming_the_flag() -> None:
    """The stream's id is still made from the file's name, before the URL is refused."""
    args = build_parser().parse_args(["serve", "--source", "file://tmp/you/a.mp4"])
    with pytest.raises(ConfigError) as refused:
        settings_from_args(args)
    assert str(refused.value) == (
        "--source file://tmp/you/a.mp4: 'file://tmp/you/a.mp4' names host 'tmp'; write file:///tmp/you/a.mp4"
    )


def test_a_file_url_on_localhost_is_this_machines_file(tmp_path: Path) -> None:
    source = open_source(f"file://localhost{tmp_path}/a.mp4")
    assert isinstance(source, FileSource) and source.path == tmp_path / "a.mp4"
    SourcePolicy.of(SourcePolicy().schemes, [tmp_path], allow_devices=False).check(f"file://localhost{tmp_path}/a.mp4")


# -- a camera's address without its scheme ------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "told"),
    [
        (
            f"admin:{PASSWORD}@192.168.1.10/stream1",
            "unsupported source 'admin:***@192.168.1.10/stream1': "
            "a camera's address? Give its scheme: rtsp://admin:***@192.168.1.10/stream1",
        ),
        (
            "cam.local:554/live",
            "unsupported source 'cam.local:554/live': a camera's address? Give its scheme: rtsp://cam.local:554/live",
        ),
        (
            "192.168.1.10:554/stream1",
            "no such file: 192.168.1.10:554/stream1 "
            "(a camera's address? Give its scheme: rtsp://192.168.1.10:554/stream1)",
        ),
        (
            f"{PASSWORD}@192.168.1.10/stream1",  # a user name alone may be a token
            "no such file: ***@192.168.1.10/stream1 (a camera's address? Give its scheme: rtsp://***@192.168.1.10/stream1)",
        ),
        (
            f"rtsp//admin:{PASSWORD}@cam/live",
            "no such file: rtsp/admin:***@cam/live (a camera's address? It needs '://': rtsp://admin:***@cam/live)",
        ),
    ],
)
def test_a_cameras_address_without_its_scheme_is_told_so_with_its_password_masked(
    uri: str, told: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative path is looked for here
    assert first_frame_error(uri) == told


def test_a_cameras_address_read_as_a_file_is_shown_without_its_password() -> None:
    """The API lists a stream by its source's description, the log names it so when it is added."""
    assert open_source(f"{PASSWORD}@192.168.1.10/stream1").describe() == "***@192.168.1.10/stream1"
    assert open_source(f"rtsp//admin:{PASSWORD}@cam/live#rate=max").describe() == "rtsp/admin:***@cam/live#rate=max"


@pytest.mark.parametrize(
    ("uri", "told"),
    [
        (
            f"admin:{PASSWORD}@192.168.1.10/stream1",
            "'admin:***@192.168.1.10/stream1': a camera's address? Give its scheme: rtsp://admin:***@192.168.1.10/stream1",
        ),
        (
            "192.168.1.10:554/stream1",
            "'192.168.1.10:554/stream1': a camera's address? Give its scheme: rtsp://192.168.1.10:554/stream1",
        ),
        ("rtsp//cam/live", "'rtsp//cam/live': a camera's address? It needs '://': rtsp://cam/live"),
    ],
)
def test_the_api_tells_a_cameras_address_without_its_scheme_as_the_command_line_does(
    uri: str, told: str, tmp_path: Path
) -> None:
    """It said "the scheme 'admin' is not allowed" with the password in it, or "give the file's absolute
    path", whether or not files may be played."""
    for policy in (SourcePolicy(), SourcePolicy.of(SourcePolicy().schemes, [tmp_path], allow_devices=False)):
        with pytest.raises(UnusableSource) as refused:
            policy.check(uri)
        assert str(refused.value) == told


def test_names_that_are_no_cameras_address_get_no_such_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for uri in ("videos/cam.mp4", "clip@2x.mp4", "/videos/me@home/clip.mp4"):
        assert "camera" not in first_frame_error(uri), uri
    for uri in ("webcam:0", "gopher://cam/x", "data:text/plain,a", "relative/clip.mp4"):
        with pytest.raises((SourceRefused, UnusableSource)) as refused:
            SourcePolicy.of(SourcePolicy().schemes, [tmp_path], allow_devices=False).check(uri)
        assert "camera's address" not in str(refused.value), uri
    for uri in ("scene:?seed=1", "rtsp://admin:pw@cam/live", "http://192.168.1.11:8080/video.mjpg"):
        SourcePolicy().check(uri)


async def test_the_api_answers_a_cameras_address_without_its_scheme_or_a_file_urls_host_with_400(
    start_server: Start, tmp_path: Path
) -> None:
    """A mistake in how the source is written, not a source the settings forbid (403); never with the password."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), media_dirs=(tmp_path,))
    told = {
        f"admin:{PASSWORD}@192.168.1.10/stream1": "a camera's address? Give its scheme: rtsp://admin:***@",
        "rtsp//cam/live": "a camera's address? It needs '://': rtsp://cam/live",
        f"file:/{tmp_path}/a.mp4": f"names host {tmp_path.parts[1]!r}; write file://{tmp_path}/a.mp4",
    }
    for uri, reason in told.items():
        response = await client.post("/api/streams", json={"id": "door", "uri": uri})
        text = await response.text()
        assert response.status == 400, text
        assert reason in text and PASSWORD not in text


# -- a '~' no shell expanded --------------------------------------------------------------------------


def test_a_tilde_no_shell_expanded_is_told_with_the_path_it_stands_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quoted ``--source 'u=~/a.mp4'`` reaches segcast as written: "no such file: ~/a.mp4" named no fix."""
    home = os.path.expanduser("~")
    assert first_frame_error("~/segcast-no-such-clip.mp4") == (
        f"no such file: ~/segcast-no-such-clip.mp4 ('~' is not expanded here: write {home}/segcast-no-such-clip.mp4)"
    )
    policy = SourcePolicy.of(SourcePolicy().schemes, [Path(home)], allow_devices=False)
    with pytest.raises(SourceRefused, match=r"give the file's absolute path \('~' is not expanded\)"):
        policy.check("~/segcast-no-such-clip.mp4")
