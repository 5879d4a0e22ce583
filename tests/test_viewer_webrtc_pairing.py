"""The WebRTC player pairs each frame it shows with that frame's own metadata, learning the offset by evidence.

The browser reports each shown frame's RTP timestamp: its pts plus an offset the sender drew at random
(server/webrtc/playback.py). The player guessed that offset from the newest metadata, but frames are
shown a few frames after their metadata arrives (the jitter buffer): the guess was a later frame's, and
as pts come from capture times, unevenly spaced, nothing paired for ~2 s, then it guessed wrong again.
It now keeps the offsets every kept metadata would give and adopts the one under which the next frames
pair, showing metadata only under an offset so learnt.

`MetaPairing` (web/webrtc_pairing.js) is driven in a real headless Chromium as a video drives it, through its
frame callbacks, by a made-up stream: capture times ~15 fps with jitter, each frame shown 3 to 5 frames
after its metadata arrived, RTP timestamps one tick short now and then (VP8's encoder), the offset
random or wrapping past 2^32 mid-way. No WebRTC session: the order of arrivals is the test's own.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.browser import Console, require_browser

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(60)

VIDEO_CLOCK_HZ = 90_000
UINT32 = 2**32
#: Frames shown before the offset is learnt: the first gives the candidates, the next ones sort them.
LEARNT_WITHIN = 3
#: After the sender's offset changes: UNPAIRED_BEFORE_RESYNC frames (web/webrtc_pairing.js), then LEARNT_WITHIN.
RELEARNT_WITHIN = 30 + LEARNT_WITHIN

#: Feeds a new MetaPairing ``events`` in turn ({pts}: metadata arriving, {rtp}: a frame shown); for each
#: frame shown, what it heard: the pts of the metadata it was given, or "unpaired".
PAIR = """async (events) => {
  const { MetaPairing } = await import("./webrtc_pairing.js");
  let heard = [];
  const pairing = new MetaPairing((meta) => heard.push(meta.pts));
  let onFrame = null;
  pairing.watch({ requestVideoFrameCallback: (callback) => { onFrame = callback; } });
  const shown = [];
  for (const event of events) {
    if (event.rtp === undefined) {
      pairing.add({ type: "frame", pts: event.pts });
      continue;
    }
    heard = [];
    onFrame(performance.now(), { rtpTimestamp: event.rtp });
    shown.push(heard.length === 1 ? heard[0] : heard.length === 0 ? "unpaired" : heard);
  }
  return shown;
}"""


def capture_pts(rng: random.Random, frames: int) -> list[int]:
    """The pts of ``frames`` frames captured at ~15 fps, each interval off by up to ~12 ms."""
    pts, time_s = [], 0.0
    for _ in range(frames):
        pts.append(round(time_s * VIDEO_CLOCK_HZ))
        time_s += rng.uniform(0.055, 0.078)
    return pts


def arrivals(rng: random.Random, pts: list[int], offsets: list[int]) -> list[dict[str, int]]:
    """Each frame's metadata as it arrives, and each frame shown (in order) once the metadata 3 to 5 frames
    after its own has arrived; frame i's RTP timestamp is its pts plus ``offsets[i]``, now and then a tick short."""
    lead = [rng.randint(3, 5) for _ in pts]
    events: list[dict[str, int]] = []
    shown = 0
    for arrived, frame_pts in enumerate(pts):
        events.append({"pts": frame_pts})
        while shown < len(pts) and (shown + lead[shown] <= arrived or arrived == len(pts) - 1):
            events.append({"rtp": (pts[shown] + offsets[shown] - rng.randint(0, 1)) % UINT32})
            shown += 1
    return events


async def pair(page: Any, events: list[dict[str, int]]) -> list[Any]:
    return list(await page.evaluate(PAIR, events))


async def open_modules_page(start_server: Start, browser: Any) -> tuple[Any, Console]:
    client = await start_server()
    page = await browser.new_page()
    console = Console(page)
    await page.goto(str(client.make_url("/static/publish.html")))  # a page of the viewer's modules
    return page, console


async def test_every_frame_is_paired_with_its_own_metadata_once_learnt(start_server: Start, browser: Any) -> None:
    page, console = await open_modules_page(start_server, browser)
    for seed in range(8):
        rng = random.Random(seed)
        pts = capture_pts(rng, 200)
        # A random offset, and one that wraps past 2^32 at frame 100.
        for offset in (rng.randrange(UINT32), UINT32 - pts[100]):
            shown = await pair(page, arrivals(rng, pts, [offset] * len(pts)))

            assert len(shown) == len(pts)
            never_anothers = [(i, heard) for i, heard in enumerate(shown) if heard not in (pts[i], "unpaired")]
            assert never_anothers == [], f"seed {seed}, offset {offset}: (frame, metadata heard)"
            unpaired = [i for i, heard in enumerate(shown[LEARNT_WITHIN:], LEARNT_WITHIN) if heard != pts[i]]
            assert unpaired == [], f"seed {seed}, offset {offset}: frames shown without their metadata"
    assert console.errors == []


async def test_pairing_is_learnt_again_after_the_senders_offset_changes(start_server: Start, browser: Any) -> None:
    page, console = await open_modules_page(start_server, browser)
    for seed in range(8):
        rng = random.Random(seed)
        pts = capture_pts(rng, 200)
        changed_at = 80
        first, second = rng.randrange(UINT32), rng.randrange(UINT32)
        offsets = [first] * changed_at + [second] * (len(pts) - changed_at)
        shown = await pair(page, arrivals(rng, pts, offsets))

        never_anothers = [(i, heard) for i, heard in enumerate(shown) if heard not in (pts[i], "unpaired")]
        assert never_anothers == [], f"seed {seed}: (frame, metadata heard)"
        learning = {*range(LEARNT_WITHIN), *range(changed_at, changed_at + RELEARNT_WITHIN)}
        unpaired = [i for i, heard in enumerate(shown) if heard != pts[i] and i not in learning]
        assert unpaired == [], f"seed {seed}: frames shown without their metadata"
    assert console.errors == []


async def test_pairing_is_learnt_where_a_third_of_the_metadata_never_comes(start_server: Start, browser: Any) -> None:
    """Metadata skipped for a data channel far behind (a loaded server) or lost: a frame without its own
    ruled out the right offset with the others, and learning began again, for ever under load."""
    page, console = await open_modules_page(start_server, browser)
    for seed in range(8):
        rng = random.Random(seed)
        pts = capture_pts(rng, 200)
        offsets = [rng.randrange(UINT32)] * len(pts)
        events = [e for e in arrivals(rng, pts, offsets) if "rtp" in e or rng.random() > 0.33]
        kept = {e["pts"] for e in events if "pts" in e}
        shown = await pair(page, events)

        never_anothers = [(i, heard) for i, heard in enumerate(shown) if heard not in (pts[i], "unpaired")]
        assert never_anothers == [], f"seed {seed}: (frame, metadata heard)"
        paired = [i for i, heard in enumerate(shown) if heard == pts[i]]
        assert paired and paired[0] < 20, f"seed {seed}: learnt only at frame {paired[:1]}"
        missed = [i for i in range(paired[0], len(pts)) if pts[i] in kept and shown[i] != pts[i]]
        assert missed == [], f"seed {seed}: frames whose metadata came, shown without it once learnt"
    assert console.errors == []
