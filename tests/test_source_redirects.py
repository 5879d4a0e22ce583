"""An HTTP camera the API added is held to ``[server] deny_networks`` wherever its redirects lead.

FFmpeg followed a camera's redirects unchecked: a camera at an allowed address that answered
"302 Location: http://127.0.0.1/metadata-secret" had FFmpeg ask a denied address at every reconnect.
segcast now follows such a camera's redirects itself, each target checked as the URI's own host is,
and FFmpeg follows none. A camera from the config file or ``--source`` is held to no list, as before.

Real HTTP servers on 127.0.0.1, and one on 127.0.0.2 that the policy denies, which records whatever
reaches it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server.http.access.policy import SourcePolicy
from server.sources import StreamState
from server.sources.http_get import Deadline
from server.sources.network import NetworkSource
from server.sources.redirects import MAX_REDIRECTS, followed_redirect
from tests.support.mjpeg_server import MJPEG_PATH, MjpegServer
from tests.support.reader_probe import FAST_BACKOFF, ReaderProbe

#: A bound only a reader that never gets there exceeds.
WAIT_S = 30.0
#: The address standing for the cloud metadata service: the policy below denies it.
DENIED_HOST = "127.0.0.2"
POLICY = SourcePolicy.of(["http", "https"], [], False, [f"{DENIED_HOST}/32"])

Answer = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True, slots=True)
class Request:
    """One GET a server received: its path, its client (FFmpeg's ``Lavf/...`` or ``segcast``), its credentials."""

    path: str
    agent: str
    authorization: str | None


class RecordingServer:
    """An HTTP server on ``host`` that records each GET, then answers it with `answer` (settable once its
    own URL is known: a server that redirects to itself)."""

    def __init__(self, host: str, answer: Answer | None = None) -> None:
        self.requests: list[Request] = []
        self.asked = threading.Event()
        self.answer = answer or not_found
        self._httpd = ThreadingHTTPServer((host, 0), _recording_handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"http-{host}", daemon=True)

    def url(self, path: str, credentials: str = "") -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{credentials + '@' if credentials else ''}{host!s}:{port}{path}"

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{host!s}:{port}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def _recording_handler(server: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests' output is about segcast."""

        def do_GET(self) -> None:
            server.requests.append(
                Request(self.path, self.headers.get("User-Agent", ""), self.headers.get("Authorization"))
            )
            server.asked.set()
            server.answer(self)

    return Handler


def not_found(handler: BaseHTTPRequestHandler) -> None:
    handler.send_error(HTTPStatus.NOT_FOUND)


def redirect(location: Callable[[str], str]) -> Answer:
    """Answer 302 to ``location(path)`` for the path asked."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(HTTPStatus.FOUND)
        handler.send_header("Location", location(handler.path))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def secret(handler: BaseHTTPRequestHandler) -> None:
    body = b"instance credentials"
    handler.send_response(HTTPStatus.OK)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def metadata_service() -> Iterator[RecordingServer]:
    with RecordingServer(DENIED_HOST, secret) as server:
        yield server


def chain(hops: int, final: str) -> Answer:
    """Redirects ``/r<hops>`` -> ``/r<hops - 1>`` ... -> ``/r1`` -> ``final``, each by a relative Location."""
    return redirect(lambda path: f"/r{int(path.removeprefix('/r')) - 1}" if path != "/r1" else final)


def test_a_redirect_to_an_address_deny_networks_refuses_is_never_followed_and_is_retried() -> None:
    """The reviewer's receiver logged ``GET /metadata-secret`` from FFmpeg at each reconnect."""
    with metadata_service() as metadata, RecordingServer("127.0.0.1") as camera:
        camera.answer = redirect(lambda _: metadata.url("/metadata-secret"))
        source = NetworkSource(camera.url("/video"), check_host=POLICY.check_stream_host)
        with ReaderProbe(source, slow_backoff=FAST_BACKOFF) as probe:
            status = probe.wait_until(
                "two attempts, or the denied address asked",
                lambda status: status.reconnects >= 2 or metadata.asked.is_set(),
                WAIT_S,
            )
    assert metadata.requests == [], "a request reached the address deny_networks refuses"
    assert status.state is StreamState.RECONNECTING, "retried: the camera may redirect elsewhere later"
    told = f"the camera redirects to {metadata.address}, which [server] deny_networks refuses"
    assert status.error is not None and status.error.startswith(told), status.error
    segcasts = [request for request in camera.requests if request.agent == "segcast"]
    assert len(segcasts) >= 2, "the redirect is looked at afresh at each attempt"


def test_a_redirect_to_an_allowed_address_is_followed_its_host_checked_and_plays() -> None:
    checked: list[str] = []

    def check_host(host: str) -> None:
        checked.append(host)
        POLICY.check_stream_host(host)

    with MjpegServer(fps=10) as video, RecordingServer("127.0.0.1") as camera:
        camera.answer = chain(2, f"http://localhost:{video.port}{MJPEG_PATH}")
        with ReaderProbe(NetworkSource(camera.url("/r2"), check_host=check_host)) as probe:
            probe.next_frame(WAIT_S)
    assert checked[:3] == ["127.0.0.1", "127.0.0.1", "localhost"], "each redirect's host was put to the check"


def test_more_redirects_than_the_bound_is_a_clear_error() -> None:
    with MjpegServer(fps=10) as video, RecordingServer("127.0.0.1", chain(MAX_REDIRECTS + 1, video.url())) as camera:
        source = NetworkSource(camera.url(f"/r{MAX_REDIRECTS + 1}"), check_host=POLICY.check_stream_host)
        with ReaderProbe(source, slow_backoff=FAST_BACKOFF) as probe:
            status = probe.wait_until(
                "played or refused", lambda status: status.state is not StreamState.STARTING, WAIT_S
            )
    assert status.state is StreamState.RECONNECTING, "refused, not played"
    assert status.error == (
        f"more than {MAX_REDIRECTS} redirects from the camera (segcast follows at most {MAX_REDIRECTS} for a "
        "camera the API added): check the URL; retried slowly"
    )
    assert video.connections == 0


def test_as_many_redirects_as_the_bound_are_followed() -> None:
    with MjpegServer(fps=10) as video, RecordingServer("127.0.0.1", chain(MAX_REDIRECTS, video.url())) as camera:
        source = NetworkSource(camera.url(f"/r{MAX_REDIRECTS}"), check_host=POLICY.check_stream_host)
        with ReaderProbe(source) as probe:
            probe.next_frame(WAIT_S)


def test_a_camera_from_the_config_file_follows_its_redirects_unchecked_as_before() -> None:
    """``deny_networks`` holds what the API adds; the owner's own cameras (config file, ``--source``) get no
    ``check_host`` (`StreamManager`), and FFmpeg follows their redirects, as many as it allows (8), anywhere."""
    with (
        metadata_service() as elsewhere,
        MjpegServer(fps=10) as video,
        RecordingServer("127.0.0.1", chain(MAX_REDIRECTS + 1, video.url())) as camera,
    ):
        elsewhere.answer = redirect(lambda _: camera.url(f"/r{MAX_REDIRECTS + 1}"))
        with ReaderProbe(elsewhere.url("/video")) as probe:
            probe.next_frame(WAIT_S)


@pytest.mark.parametrize(
    ("location", "sent"),
    [
        (lambda camera: "/next", True),
        (lambda camera: camera.url("/next").replace("127.0.0.1", "localhost"), False),
        (lambda camera: camera.url("/next").replace("http:", "https:"), False),
    ],
    ids=["the same host", "another host", "another scheme"],
)
def test_the_cameras_credentials_follow_a_redirect_only_on_its_own_host(
    location: Callable[[RecordingServer], str], sent: bool
) -> None:
    """The user and password are the URI's host's: a redirect elsewhere is opened without them."""
    with RecordingServer("127.0.0.1") as camera:
        camera.answer = redirect(lambda _: location(camera))
        url = camera.url("/video", credentials="admin:pw")
        followed = followed_redirect(url, url, Deadline.after(WAIT_S), POLICY.check_stream_host, None)
    assert followed is not None
    assert ("admin:pw@" in followed) is sent, followed
    assert [request.authorization for request in camera.requests] == ["Basic YWRtaW46cHc="]
