"""What the event outputs hand their sinks, seen by a sink that only notes it."""

from __future__ import annotations

from server.events.config import EventsSettings
from server.events.counts import Counts
from server.events.outputs import EventOutputs
from server.events.sink import OutEvent, SinkHealth, SinkState
from tests.support.event_packets import with_counts


class NotingSink:
    """A sink that delivers nothing and notes the counts it is offered."""

    name = "noting"
    snapshots = False

    def __init__(self) -> None:
        self.counts: list[tuple[str, Counts]] = []

    def offer(self, event: OutEvent) -> None:
        """Events are not what these tests look at."""

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        self.counts.append((stream_id, counts))

    def forget_stream(self, stream_id: str) -> None:
        """Nothing is kept of a stream."""

    async def start(self) -> None:
        """No task or thread to start."""

    async def stop(self) -> None:
        """No task or thread to stop."""

    def health(self) -> SinkHealth:
        return SinkHealth(self.name, SinkState.OK, 0, 0, 0, None)


def outputs_to(sink: NotingSink) -> EventOutputs:
    """Event outputs feeding ``sink`` alone."""
    outputs = EventOutputs(EventsSettings())
    outputs.sinks = (sink,)
    return outputs


def test_counts_are_offered_when_they_change_not_with_every_frame() -> None:
    """Every frame carries its stream's counts: offered each time, MQTT would publish a camera's unchanged
    counts again as fast as its frames come."""
    sink = NotingSink()
    outputs = outputs_to(sink)
    for seq in range(10):
        outputs.on_packet(with_counts(seq, {"people": 3}))
    assert [counts["people"] for _, counts in sink.counts] == [3]

    outputs.on_packet(with_counts(10, {"people": 4}))
    outputs.on_packet(with_counts(11, {"people": 4}))
    assert [(stream, counts["people"]) for stream, counts in sink.counts] == [("cam", 3), ("cam", 4)]
