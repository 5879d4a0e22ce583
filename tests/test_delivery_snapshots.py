"""Snapshots share their stream's budget of scaled sizes (``[server] max_scaled_images``) with its viewers:
a dashboard polling one snapshot per width made one more encoding of every frame per width."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable

import cv2
import numpy as np
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.delivery.encode import WIDTH_STEPS_PX
from server.delivery.viewer import MAX_SCALED_IMAGES
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
FRAME_WIDTH = 640
#: A frame a second: the snapshots asked for at once are nearly all of one frame.
STREAM = StreamConfig("cam", f"scene:?seed=1&fps=1&width={FRAME_WIDTH}&height=384")


def width_of(jpeg: bytes) -> int:
    return int(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[1])


async def test_snapshots_at_many_widths_get_at_most_max_scaled_images_sizes_of_a_frame(start_server: Start) -> None:
    client = await start_server(STREAM)

    async def live() -> bool:
        async with client.get("/api/streams/cam/snapshot.jpg") as response:
            return response.status == 200

    await eventually(live, timeout_s=60, what="the stream's first frame")
    asked = [width for width in WIDTH_STEPS_PX if width < FRAME_WIDTH]

    async def snapshot(width: int) -> tuple[int, int]:
        async with client.get("/api/streams/cam/snapshot.jpg", params={"max_width": str(width)}) as response:
            assert response.status == 200
            return int(response.headers["X-Segcast-Seq"]), width_of(await response.read())

    answers = await asyncio.gather(*(snapshot(width) for width in asked))
    widths_of_frame: defaultdict[int, set[int]] = defaultdict(set)
    for seq, given in answers:
        widths_of_frame[seq].add(given)
    assert all(len(widths) <= MAX_SCALED_IMAGES for widths in widths_of_frame.values()), dict(widths_of_frame)
    async with client.get("/metrics") as response:
        metrics = await response.text()
    [refused] = [line.split()[1] for line in metrics.splitlines() if line.startswith("segcast_scaled_images_refused")]
    assert int(refused) >= len(asked) - MAX_SCALED_IMAGES * len(widths_of_frame)
