"""Fixtures shared by the suite: generated videos (cached between runs) and a running segcast app."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp.web_app
import aioice.ice
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from server.app import create_app
from server.config import Settings, StreamConfig
from server.http import pages
from server.inference.models import BUNDLED_MODEL
from server.scene import Scene, write_h264
from tests.support.cached_videos import cached_video
from tests.support.mosquitto import Broker
from tests.support.numbered import write_numbered_video
from tests.support.rtsp_camera import cached_camera_video

SCENE_SEED = 7
SCENE_FRAMES = 300
NUMBERED_FRAMES = 60
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download cannot work offline

ClientFactory = Callable[..., Awaitable[TestClient]]

# PyTorch's OpenMP threads spin while they wait for work. The suite runs tests that use the model on
# several workers at once on few cores, where spinning threads take the cores the others need: one such
# test took 3 times as long, three at once, spinning (60 s against 21). Read as PyTorch loads, which
# nothing above does; the workers and the servers tests start inherit it. A setting of one's own wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def _fresh_aioice_mdns() -> Iterator[None]:
    """Each test has its own event loop, but aioice keeps one mDNS lock per process.

    A browser's offer names its host candidates by mDNS, so the server's ICE takes that lock; a loop
    that ends while it is held (at a test's teardown) leaves it locked and bound to that loop, and
    every later offer in the process fails with "bound to a different event loop".
    """
    yield
    vars(aioice.ice._mdns).clear()


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """aiohttp caches each app's middleware chain in one process-wide LRU of 1024 entries, keyed by the
    apps themselves: in a server that builds its app once that is one entry, but here each test builds
    its own, and each stopped app kept its model, streams and frames alive (a worker grew to ~10 GB
    over the suite). Clearing it after each test lets them go; nothing here relies on the cache."""
    yield
    aiohttp.web_app._cached_build_middleware.cache_clear()


class ServedAsInProduction(TestServer):
    """aiohttp's test server, but leaving a handler running when its client goes away, as ``web.run_app``
    (so ``segcast serve``) does: the test server cancels it, which hid a bug of every handler that
    waits without writing (an MJPEG viewer that left stayed counted until its next frame)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return await super()._make_runner(**{**kwargs, "handler_cancellation": False})


@pytest.fixture
def aiohttp_client(aiohttp_client: ClientFactory) -> ClientFactory:
    """pytest-aiohttp's ``aiohttp_client``, serving an app as `ServedAsInProduction`."""

    async def client(app: web.Application | TestServer, *args: Any, **kwargs: Any) -> TestClient:
        if isinstance(app, web.Application):
            app = ServedAsInProduction(app, **(kwargs.pop("server_kwargs", None) or {}))
        return await aiohttp_client(app, *args, **kwargs)

    return client


@pytest.fixture(scope="session")
def camera_video(video_cache: Path) -> Path:
    """40 s of a generated scene as an IP camera encodes it, for the RTSP camera tests."""
    return cached_camera_video(video_cache, 40)


@pytest.fixture(scope="session")
def video_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that survives between runs, so generated videos are encoded once per machine.

    With pytest's cache turned off (``-p no:cacheprovider``) they are made once per run instead.
    """
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir("segcast-videos")) if cache is not None else tmp_path_factory.mktemp("segcast-videos")


@pytest.fixture(scope="session")
def scene_video(video_cache: Path) -> Path:
    """A 20 s H.264 file of the generated scene with seed `SCENE_SEED` (crossings and occlusions)."""
    return cached_video(
        video_cache / f"scene-{SCENE_SEED}-{SCENE_FRAMES}.mp4",
        lambda partial: write_h264(Scene(seed=SCENE_SEED), partial, SCENE_FRAMES),
    )


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Triton model repository of the bundled model, as ``segcast export --format triton`` writes it."""
    from server.inference.export import Progress, export_model

    folder = tmp_path_factory.mktemp("triton-repository")
    export_model("bundled", "triton", folder, progress=Progress(3, io.StringIO()))
    return folder


@pytest.fixture(scope="session")
def numbered_video(video_cache: Path) -> Path:
    """`NUMBERED_FRAMES` pictures that carry their index and pure colour patches (tests/support/numbered.py)."""
    return cached_video(
        video_cache / f"numbered-{NUMBERED_FRAMES}.mp4", lambda partial: write_numbered_video(partial, NUMBERED_FRAMES)
    )


@pytest.fixture
def start_server(aiohttp_client: ClientFactory) -> Callable[..., Awaitable[TestClient]]:
    """Start the real app on 127.0.0.1 with the bundled model and the given streams."""

    async def start(*streams: StreamConfig, **overrides: object) -> TestClient:
        settings = Settings(model=str(BUNDLED_MODEL), streams=streams, **overrides)  # type: ignore[arg-type]
        return await aiohttp_client(create_app(settings))

    return start


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the browser tests' screenshots, kept as artifacts: under the pytest cache
    (``.pytest_cache/d/viewer-screenshots/<test>``), or a temporary folder when the cache is off."""
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("viewer-screenshots")) if cache is not None else tmp_path_factory.mktemp("screenshots")
    folder = root / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@asynccontextmanager
async def launched_chromium() -> AsyncIterator[Any]:
    """A headless Debian Chromium driven by Playwright, closed at the end of the ``with`` block."""
    from playwright import async_api as playwright

    async with playwright.async_playwright() as driver:
        instance = await driver.chromium.launch(executable_path=CHROMIUM)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Debian Chromium driven by Playwright, closed after the test."""
    async with launched_chromium() as instance:
        yield instance


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real MQTT broker (Debian's mosquitto) on a free port of 127.0.0.1, stopped after the test."""
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def viewer_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the viewer's files that the app made next serves, as an install's would be."""
    folder = tmp_path / "site-packages" / "server" / "web"
    shutil.copytree(Path(__file__).resolve().parent.parent / "web", folder)
    monkeypatch.setattr(pages, "web_root", lambda: folder)
    return folder
