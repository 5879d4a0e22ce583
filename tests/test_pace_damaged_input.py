"""A capped stream is judged only on the frames its input delivered: a video whose damaged stretch the
decoder skips, handing over a frame only every few seconds there, is not behind for the frames it never had.

Seen with a 15 fps file damaged in its middle at ``process_fps = 1``: after the damage the decoder gave a
frame every 3 s or so for a while (each processed), then 15 fps again; the window over both was judged
against 1 frame a second throughout, and the stream called behind (0.4 of 1.0 fps) on an idle node.
The counters are fed once a (made-up) second, as `StreamManager.check_pace` samples them.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.inference.pace import PaceSample, PaceVerdict, StreamPace

WINDOW_S = 10
CAP_FPS = 1.0
FILE_FPS = 15


class CappedInput:
    """One stream capped at `CAP_FPS`: each second, of the frames its input gave, the cap's share is
    due and the rest thinned (`FrameCap`); the due ones processed, or replaced before inference took
    them (dropped) on a node short of it."""

    def __init__(self) -> None:
        self.pace = StreamPace(window_s=WINDOW_S)
        self.at = 0.0
        self.read = self.dropped = self.thinned = self.processed = 0

    def run(self, frames_each_second: Sequence[int], processed: bool = True) -> list[PaceVerdict]:
        verdicts = []
        for frames in frames_each_second:
            self.at += 1.0
            due = min(frames, int(CAP_FPS))
            self.read += frames
            self.thinned += frames - due
            self.processed += due if processed else 0
            self.dropped += 0 if processed else due
            sample = PaceSample(self.at, True, self.read, self.dropped, self.processed, self.thinned, CAP_FPS)
            verdicts.append(self.pace.update(sample))
        return verdicts


#: A damaged stretch: a frame every 3 s. The first gap pauses the stream, so it is judged afresh; the
#: frame interval learnt then (3 s) keeps the later gaps from pausing it (`PAUSED_AFTER_INTERVALS`).
DAMAGED_STRETCH = [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1]


def test_a_capped_stream_whose_input_gave_few_frames_for_a_while_is_not_behind() -> None:
    stream = CappedInput()
    # Given a 15 fps file capped at 1 fps that keeps up, judged over a whole window
    assert stream.run([FILE_FPS] * (WINDOW_S + 1))[-1].processed_share == 1.0
    # When a damaged stretch leaves its input a frame every 3 s, each processed, and then the file goes on
    # at 15 fps
    trickle = stream.run(DAMAGED_STRETCH)
    after = stream.run([FILE_FPS] * (2 * WINDOW_S))
    # Then it is never behind: it got every frame its cap wanted of those its input gave
    assert not any(v.behind for v in trickle + after)
    judged = [v for v in trickle + after if v.judged]
    assert judged, "the stream was never judged again"
    assert all(v.processed_share == 1.0 for v in judged)


def test_a_capped_stream_given_under_half_of_what_its_input_allowed_is_still_behind() -> None:
    stream = CappedInput()
    stream.run([FILE_FPS] * (WINDOW_S + 1))
    # Given the same damaged stretch, each of its frames processed
    stream.run(DAMAGED_STRETCH)
    # When the file goes on at 15 fps but none of its due frames reach the model
    verdicts = stream.run([FILE_FPS] * 4, processed=False)
    # Then it is behind: of the 6 frames its cap wanted over the window, only the stretch's 2 were processed
    assert verdicts[-1].behind and verdicts[-1].processed_share == 2 / 6
