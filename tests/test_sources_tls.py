"""Cameras over TLS: unchecked by default, checked with #tls_verify=1 or #ca_file=, never sent a
password once their certificate is refused.

The camera is served by the test on 127.0.0.1 with certificates made for it: one signed by a test CA
for 127.0.0.1, one signed by the same CA for another name, and one that signed itself (as most IP
cameras' do, and as a machine posing as the camera would).
"""

from __future__ import annotations

import base64
import datetime
import errno
import io
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import av
import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.sources import SourceError, StreamState, check_uri, opening_failures
from server.sources.http_answers import ask_again
from server.sources.http_get import trusting
from server.sources.network import NetworkSource
from tests.support.reader_probe import ReaderProbe

USER, PASSWORD = "admin", "CameraPassw0rd"
AUTHORIZATION = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BOUNDARY = "frame"
#: How long a served connection waits for a request, and between pictures: ends a served stream when asked.
SERVE_WAIT_S = 0.1


@dataclass(frozen=True, slots=True)
class Certificates:
    ca: Path  # the test CA's certificate, for #ca_file=
    for_camera: tuple[Path, Path]  # signed by the CA for 127.0.0.1: certificate and key
    for_another_name: tuple[Path, Path]  # signed by the CA for attacker.invalid
    self_signed: tuple[Path, Path]  # for 127.0.0.1, signed by itself


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls-camera")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("segcast test CA")
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, None, is_ca=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    here = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))

    def signed(name: str, alternative: x509.GeneralName, by_ca: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer, signer = (ca_name, ca_key) if by_ca else (_name(name), key)
        cert = _certificate(_name(name), issuer, key.public_key(), signer, alternative, is_ca=False)
        paths = folder / f"{name}-{by_ca}.pem", folder / f"{name}-{by_ca}.key"
        paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[1].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return paths

    return Certificates(
        folder / "ca.pem",
        signed("camera", here, by_ca=True),
        signed("attacker.invalid", x509.DNSName("attacker.invalid"), by_ca=True),
        signed("attacker.invalid", here, by_ca=False),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    alternative: x509.GeneralName | None,
    is_ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if alternative is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([alternative]), critical=False)
    return builder.sign(signer, hashes.SHA256())


class TlsCamera:
    """A camera on 127.0.0.1 behind TLS that asks for Basic authorisation and then serves MJPEG; an
    RTSP request (rtsps) is recorded and answered by hanging up.

    `requests` holds every request's head that came through a finished handshake, so a test can tell
    that nothing at all was sent; `handshakes` is set at each handshake, refused or not.
    """

    def __init__(self, certificate: tuple[Path, Path]) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(*certificate)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(SERVE_WAIT_S)
        self.port = int(self._listener.getsockname()[1])
        self.requests: list[str] = []
        self.handshakes = threading.Event()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        gradient = np.tile(np.arange(320, dtype=np.uint8), (192, 1))
        self._jpegs = [cv2.imencode(".jpg", cv2.merge([gradient, gradient // 2, gradient + shift]))[1].tobytes()
                       for shift in (0, 64)]  # fmt: skip

    def url(self, scheme: str = "https", options: str = "") -> str:
        return f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{self.port}/video.mjpg{options}"

    @property
    def authorizations(self) -> list[str]:
        return [line for head in self.requests for line in head.splitlines() if line.startswith("Authorization:")]

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), name="tls-camera", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        try:
            with self._context.wrap_socket(connection, server_side=True) as secured:
                head = b""
                while b"\r\n\r\n" not in head:
                    piece = secured.recv(4096)
                    if not piece:
                        return
                    head += piece
                text = head.decode("latin-1")
                self.requests.append(text)
                if text.startswith("GET "):
                    self._answer(secured, text)
        except (OSError, ssl.SSLError):
            return  # a refused handshake, or a client that hung up
        finally:
            self.handshakes.set()
            connection.close()

    def _answer(self, secured: ssl.SSLSocket, head: str) -> None:
        if f"Authorization: {AUTHORIZATION}" not in head:
            secured.sendall(
                b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="camera"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        secured.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary={BOUNDARY}\r\n\r\n".encode()
        )
        index = 0
        while not self._closing.is_set():
            jpeg = self._jpegs[index % len(self._jpegs)]
            index += 1
            part = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            secured.sendall(part.encode() + jpeg + b"\r\n")
            self._closing.wait(SERVE_WAIT_S)

    def __enter__(self) -> Self:
        thread = threading.Thread(target=self._accept, name="tls-camera-accept", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()


class TakenOverCamera(TlsCamera):
    """The camera (its CA-signed certificate) sends a web page to the request it authorises, and from
    then on a server posing as it (a self-signed certificate) answers at its address: the look-up made
    after FFmpeg failed on the page meets the poser. `posed` counts the connections the poser took."""

    def __init__(self, certificate: tuple[Path, Path], posing: tuple[Path, Path]) -> None:
        super().__init__(certificate)
        self._posing = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._posing.load_cert_chain(*posing)
        self.posed = 0

    def _serve(self, connection: socket.socket) -> None:
        if self._context is self._posing:
            self.posed += 1
        super()._serve(connection)

    def _answer(self, secured: ssl.SSLSocket, head: str) -> None:
        if self._context is self._posing or f"Authorization: {AUTHORIZATION}" not in head:
            super()._answer(secured, head)
            return
        self._context = self._posing  # before FFmpeg has the page, so before anything asks again
        page = b"<!DOCTYPE html><html><body>camera</body></html>"
        secured.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page)
        )


class TlsFiles(TlsCamera):
    """A TLS web server of ``files`` (path: content), asking for no authorisation: an HLS stream's."""

    def __init__(self, certificate: tuple[Path, Path], files: dict[str, bytes]) -> None:
        super().__init__(certificate)
        self._files = files

    def _answer(self, secured: ssl.SSLSocket, head: str) -> None:
        body = self._files.get(head.split(" ", 2)[1])
        status = "200 OK" if body is not None else "404 Not Found"
        secured.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body or b'')}\r\n\r\n".encode() + (body or b""))


def tiny_segment() -> bytes:
    """An MPEG-TS segment of a few small frames, for an HLS playlist to list."""
    written = io.BytesIO()
    with av.open(written, "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), index * 40, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return written.getvalue()


@pytest.fixture
def posing_camera(certificates: Certificates) -> Iterator[TlsCamera]:
    """A server with a certificate that signed itself: a camera's own, or one posing as it."""
    with TlsCamera(certificates.self_signed) as camera:
        yield camera


def test_an_unchecked_tls_camera_plays_as_before(posing_camera: TlsCamera) -> None:
    with ReaderProbe(posing_camera.url()) as probe:
        frame = probe.next_frame(20)

    assert frame.image.shape == (192, 320, 3)
    assert posing_camera.authorizations, "unchecked, as FFmpeg's default: the password goes to whoever answers"


def test_a_refused_certificate_gets_no_password_and_a_reason_naming_the_fix(posing_camera: TlsCamera) -> None:
    with ReaderProbe(posing_camera.url(options="#tls_verify=1")) as probe:
        status = probe.wait_until("refused", lambda s: s.error is not None and "not trusted" in s.error, 20)

    assert status.state is StreamState.RECONNECTING, "retried, as a network failure is"
    assert status.error is not None and "#ca_file=" in status.error and "#tls_verify" in status.error
    assert "self-signed certificate" in status.error
    assert posing_camera.handshakes.is_set()
    assert posing_camera.requests == [], "nothing at all is sent through a refused handshake"


def test_a_camera_signed_by_the_given_ca_plays(certificates: Certificates) -> None:
    with (
        TlsCamera(certificates.for_camera) as camera,
        ReaderProbe(camera.url(options=f"#ca_file={certificates.ca}")) as probe,
    ):
        frame = probe.next_frame(20)

    assert frame.image.shape == (192, 320, 3)
    assert camera.authorizations == [f"Authorization: {AUTHORIZATION}"]


def test_a_certificate_of_the_given_ca_for_another_name_is_refused(certificates: Certificates) -> None:
    with TlsCamera(certificates.for_another_name) as camera:
        source = NetworkSource(camera.url(options=f"#ca_file={certificates.ca}&open_timeout=10"))
        with pytest.raises(ConnectionError, match=r"not trusted \(IP address mismatch") as refused:
            next(source.open(threading.Event()))

    assert f"check that {certificates.ca} holds the CA" in str(refused.value)
    assert camera.handshakes.is_set() and camera.requests == []


def test_rtsps_checks_the_certificate_too(certificates: Certificates, posing_camera: TlsCamera) -> None:
    posing = NetworkSource(posing_camera.url("rtsps", "#tls_verify=1"))
    with pytest.raises(ConnectionError, match="TLS certificate is not trusted"):
        next(posing.open(threading.Event()))

    with TlsCamera(certificates.for_camera) as camera:
        trusted = NetworkSource(camera.url("rtsps", f"#ca_file={certificates.ca}"))
        with pytest.raises(ConnectionError):  # the camera hangs up on its RTSP request: it got through TLS
            next(trusted.open(threading.Event()))

    assert posing_camera.handshakes.is_set() and posing_camera.requests == []
    assert camera.requests[0].startswith(f"OPTIONS rtsps://127.0.0.1:{camera.port}/video.mjpg RTSP/1.0")


def test_segcasts_own_look_ups_check_the_certificate_as_ffmpeg_does(
    certificates: Certificates, posing_camera: TlsCamera
) -> None:
    refused = ask_again(posing_camera.url(), 10, trust=trusting(str(certificates.ca)))
    unchecked = ask_again(posing_camera.url(), 10)

    assert refused is None
    assert unchecked is not None and unchecked.status == 200
    assert len(posing_camera.authorizations) == 1, "only the unchecked look-up sent the password"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("#tls_verify=maybe", "tls_verify='maybe' in .*: use 1"),
        ("#ca_file=ca.pem", "ca_file='ca.pem' in .*: give the CA file's absolute path"),
        ("#tls_verify=0&ca_file=/etc/ca.pem", "ca_file checks the certificate, tls_verify=0 says not to"),
    ],
)
def test_unusable_tls_options_are_refused_when_the_source_is_made(options: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        check_uri(f"https://{USER}:{PASSWORD}@camera.local/video.mjpg{options}")


def test_tls_options_on_an_unencrypted_url_are_refused() -> None:
    with pytest.raises(SourceError, match="http:// is not encrypted"):
        check_uri("http://camera.local/video.mjpg#tls_verify=1")


def test_a_ca_file_that_cannot_be_read_fails_the_stream_naming_it(tmp_path: Path, posing_camera: TlsCamera) -> None:
    missing = tmp_path / "missing.pem"
    with ReaderProbe(posing_camera.url(options=f"#ca_file={missing}")) as probe:
        status = probe.wait_state(StreamState.FAILED, 20)

    assert status.error is not None and f"ca_file={str(missing)!r}: no CA certificates can be read" in status.error
    assert posing_camera.requests == []


def test_segcasts_look_up_after_a_failed_open_checks_the_certificate_of_whoever_answers(
    certificates: Certificates,
) -> None:
    with TakenOverCamera(certificates.for_camera, certificates.self_signed) as camera:
        source = NetworkSource(camera.url(options=f"#ca_file={certificates.ca}&open_timeout=10"))
        with pytest.raises(ConnectionError) as failed:
            next(source.open(threading.Event()))

    assert camera.posed >= 1, "the look-up after FFmpeg's failure reached the server posing as the camera"
    assert camera.authorizations == [f"Authorization: {AUTHORIZATION}"], "the poser was sent no password"
    assert "web page" not in str(failed.value), "the look-up did not complete"


def test_an_hls_stream_with_its_certificate_checked_fails_naming_the_limit(certificates: Certificates) -> None:
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.5,\nsegment.ts\n#EXT-X-ENDLIST\n"
    files = {"/index.m3u8": playlist, "/segment.ts": tiny_segment()}
    with (
        TlsFiles(certificates.for_camera, files) as server,
        ReaderProbe(f"https://127.0.0.1:{server.port}/index.m3u8#ca_file={certificates.ca}") as probe,
    ):
        status = probe.wait_until("failed or playing", lambda s: s.state is StreamState.FAILED or s.frames_read > 0, 20)

    assert status.state is StreamState.FAILED and status.frames_read == 0
    assert status.error is not None and "an HLS stream's first playlist only" in status.error
    assert any(request.startswith("GET /index.m3u8 ") for request in server.requests), "FFmpeg opened it"


def test_tls_verify_alone_gives_ffmpeg_the_ca_file_python_knows(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))  # what the system's CA file would be
    system = NetworkSource("https://camera.local/video.mjpg#tls_verify=1").av_options()
    own = NetworkSource(f"https://camera.local/video.mjpg#ca_file={certificates.ca.parent / 'own.pem'}").av_options()
    unchecked = NetworkSource("https://camera.local/video.mjpg").av_options()

    assert (system["tls_verify"], system["ca_file"]) == ("1", str(certificates.ca))
    assert (own["tls_verify"], own["ca_file"]) == ("1", str(certificates.ca.parent / "own.pem"))
    assert "tls_verify" not in unchecked and "ca_file" not in unchecked


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("https://127.0.0.1/video.mjpg", 443),
        ("rtsps://127.0.0.1/live", 322),
        ("rtmps://127.0.0.1/live/key", 443),
        ("https://127.0.0.1:8443/video.mjpg", 8443),
    ],
)
def test_a_refused_certificate_is_looked_for_at_the_port_ffmpeg_connected_to(
    url: str, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: list[tuple[str, int]] = []

    def refused(*args: object, **kwargs: object) -> None:
        raise av.error.FFmpegError(errno.EIO, "Input/output error")

    def refusal(host: str, at_port: int, *args: object) -> str:
        probed.append((host, at_port))
        return "self-signed certificate"

    monkeypatch.setattr(av, "open", refused)
    monkeypatch.setattr(opening_failures, "certificate_refusal", refusal)
    with pytest.raises(ConnectionError, match="not trusted"):
        next(NetworkSource(f"{url}#tls_verify=1").open(threading.Event()))

    assert probed == [("127.0.0.1", port)]


@pytest.mark.parametrize("options", ["#transport=http", "#tls_verify=1&transport=http&open_timeout=5"])
def test_rtsps_through_the_plain_http_tunnel_is_refused_naming_https(options: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        uri = f"rtsps://{USER}:{PASSWORD}@127.0.0.1:{listener.getsockname()[1]}/live{options}"
        with pytest.raises(SourceError, match=r"plain HTTP.*use transport=https"):
            check_uri(uri)
        with pytest.raises(SourceError, match="use transport=https"):
            next(NetworkSource(uri).open(threading.Event()))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection came: nothing was sent in plain text

    check_uri(uri.replace("transport=http", "transport=https"))
    check_uri(f"rtsp://{USER}:{PASSWORD}@camera.local/live#transport=http")
