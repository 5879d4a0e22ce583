"""A real IP camera for tests: Debian's GStreamer RTSP server in its own process.

The server needs PyGObject and GStreamer's introspection data, which only the system Python has, so
this file is two things: run as a script by ``/usr/bin/python3`` it *is* the camera; imported by the
tests it is `RtspCamera`, which starts and kills that process. The script half imports nothing outside
the standard library and ``gi``, so it runs without segcast's virtual environment.

The camera serves an H.264 file (the generated scene) at ``rtsp://127.0.0.1:<port>/scene``, in real
time, from the start for each client; with ``--user``/``--password`` it refuses other clients with 401.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
READY_LINE = "READY"
START_TIMEOUT_S = 15.0
MOUNT = "/scene"


def system_rtsp_server_available() -> bool:
    """Whether the system Python can run GStreamer's RTSP server (tests skip with a reason if not)."""
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0


#: The frame rate of the camera videos the RTSP tests serve.
CAMERA_FPS = 15


def cached_camera_video(cache: Path, seconds: float, fps: int = CAMERA_FPS, key_frame_s: float = 1.0) -> Path:
    """`write_camera_video`'s file in ``cache``, made once per cache (`cached_video`)."""
    from tests.support.cached_videos import cached_video  # here: the script half imports only the stdlib

    gop = "" if key_frame_s == 1.0 else f"-gop{key_frame_s:g}"
    return cached_video(
        cache / f"camera-{fps}fps-{seconds:g}s{gop}.mp4",
        lambda partial: write_camera_video(partial, seconds, fps, key_frame_s=key_frame_s),
    )


def write_camera_video(
    path: Path, seconds: float, fps: int = 15, width: int = 320, height: int = 192, key_frame_s: float = 1.0
) -> Path:
    """The generated scene as H.264 with a key frame every ``key_frame_s`` (a second, as IP cameras send it).

    A client that joins mid-stream can only start decoding at a key frame, so the interval bounds how
    long a (re)connection takes to show a picture; "smart codec" cameras send one only every 30 s or
    so. Imported lazily: the camera script half of this file runs where segcast's dependencies are
    not installed.
    """
    from fractions import Fraction

    import av

    from server.scene import Scene

    scene = Scene(seed=7, width=width, height=height, fps=fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "tune": "zerolatency", "g": str(round(key_frame_s * fps)), "crf": "23"}
        for image in scene.frames(round(seconds * fps)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class RtspCamera:
    """Starts, kills and restarts the camera process on one fixed port, like a camera that reboots."""

    def __init__(self, video: Path, port: int | None = None, user: str | None = None, password: str | None = None):
        self.video = video
        # Imported here: this file is also the camera's script, run by Debian's python3, which has no `tests`.
        from tests.support.ports import free_port

        self.port = port or free_port()
        self.user = user
        self.password = password
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{MOUNT}"

    def url_with(self, user: str, password: str) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}{MOUNT}"

    def start(self) -> None:
        """Start the server and return once it accepts connections (raise if it does not in time)."""
        command = [SYSTEM_PYTHON, __file__, "--port", str(self.port), "--video", str(self.video)]
        if self.user is not None and self.password is not None:
            command += ["--user", self.user, "--password", self.password]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
        )
        try:
            self._wait_until_ready(self._process)
        except BaseException:
            self.kill()  # its own session: nothing else would ever stop it
            raise

    def _wait_until_ready(self, process: subprocess.Popen[str]) -> None:
        """Return once the script says READY (it listens); raise if it exits first or says nothing for
        `START_TIMEOUT_S`. Its lines are read by a thread of their own, so a silent hang is timed out
        here too, not left to block a readline until the test's own timeout."""
        said: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_forward_until_ready, args=(process, said), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                line = said.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"RTSP camera did not listen on port {self.port} in {START_TIMEOUT_S} s") from None
            if line.strip() == READY_LINE:
                return
            if not line:
                raise RuntimeError(f"RTSP camera exited before it listened on port {self.port}")

    def kill(self) -> None:
        """Kill the server at once, as a camera losing power would: no RTSP teardown, sockets just close."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> RtspCamera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _forward_until_ready(process: subprocess.Popen[str], said: queue.Queue[str]) -> None:
    """Put each line the camera script prints into ``said``, up to READY; "" once its output ends."""
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        said.put(line)
        if not line or line.strip() == READY_LINE:
            return


def _serve(port: int, video: Path, user: str | None, password: str | None) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{video}" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )'
    )
    factory.set_shared(False)  # each client gets the scene from its start, like a fresh camera session
    if user is not None and password is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print(READY_LINE, flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    _serve(args.port, args.video, args.user, args.password)
