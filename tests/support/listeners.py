"""The viewers' side of a `server.streams.StreamManager`, for tests that look at something else."""

from __future__ import annotations

from server.delivery.encode import FramePacket
from server.inference.models import InferenceStatus
from server.sources import StreamState


class SilentListener:
    """A `server.streams.PipelineListener` that takes every piece of news and keeps none: a test that
    wants one kind (each published result, say) overrides that method alone."""

    def publish_threadsafe(self, packet: FramePacket) -> None:
        pass

    def state_threadsafe(self, stream_id: str, state: StreamState, error: str | None) -> None:
        pass

    def inference_threadsafe(self, status: InferenceStatus) -> None:
        pass

    def stream_added_threadsafe(self, stream_id: str) -> None:
        pass

    def stream_removed_threadsafe(self, stream_id: str) -> None:
        pass
