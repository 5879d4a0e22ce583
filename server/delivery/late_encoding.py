"""Images of a stream's newest frame that the encoder did not make, encoded for the hub on request.

The encoder makes each frame's images before the hub publishes it, as many as its viewers wanted then.
A snapshot, or a viewer that subscribes to an image nobody wanted, asks for one later: `LateEncoder`
encodes it off the loop, once however many ask at the same time, keeps it with the frame while that is
its stream's newest, and chooses which size a snapshot gets so that polling at many widths cannot cost
an encoding per width per frame. It is its own module because this is the hub's only work in worker
threads: which futures exist and when they are dropped is decided here, and nowhere else in the hub.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping

from server.delivery.encode import ALL_STREAMS, JPEG_QUALITY, FramePacket, Variant, encode_variants
from server.delivery.viewer import ViewerLimits

log = logging.getLogger(__name__)


class LateEncoder:
    """Encodes images of the hub's newest frames on the loop's executor, sharing each encoding among its callers.

    ``latest``, ``wanted`` and ``limits`` are the hub's own, read (and ``latest`` written: a finished
    encoding is kept with its frame) as they are at each call; everything here runs on the loop.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        latest: dict[str, FramePacket],
        wanted: Mapping[str, frozenset[Variant]],
        limits: ViewerLimits,
    ) -> None:
        self._loop = loop
        self._latest = latest
        self._wanted = wanted
        self._limits = limits
        #: Of the JPEGs made here: the encoder's, set by the app (through `Hub.jpeg_quality`).
        self.jpeg_quality = JPEG_QUALITY
        #: Snapshots given another image because their stream had all its scaled sizes.
        self.scaled_images_refused = 0
        #: JPEGs being made off the loop for a newest frame that lacked them, by stream, frame seq and
        #: variant: snapshots and new viewers asking for the same one at once share one encoding.
        self._encodings: dict[tuple[str, int, Variant], asyncio.Future[bytes]] = {}

    def snapshot_image(self, packet: FramePacket, asked: Variant) -> Variant:
        """``asked``, unless it is one scaled size too many for ``packet``'s stream (`_scaled_in_use`
        has `ViewerLimits.max_scaled_images` others): then the size in use nearest it (`_nearest`),
        counted in `scaled_images_refused`. A width at or above the frame's gets its full size, made
        already if it was, under whichever variant (`encode_variants` shares one JPEG between them).

        Polled at many widths (a dashboard's tiles), snapshots would otherwise cost an encoding per
        width per frame.
        """
        if asked in packet.jpegs:
            return asked
        width = packet.result.frame.image.shape[1]
        if not scales(asked, width):  # its full size: one image of each kind, never a scaled size
            made = [image for image in packet.jpegs if image.kind is asked.kind and not scales(image, width)]
            return made[0] if made else asked.full_size
        in_use = self._scaled_in_use(packet)
        if asked in in_use or len(in_use) < self._limits.max_scaled_images:
            return asked
        self.scaled_images_refused += 1
        return _nearest(asked, in_use)

    def _scaled_in_use(self, packet: FramePacket) -> set[Variant]:
        """The scaled images of ``packet``'s stream: those its viewers want (of it, and of every stream),
        and those made of ``packet`` for snapshots, made or being made; not those at or above its width."""
        stream_id = packet.stream_id
        images = self._wanted.get(stream_id, frozenset()) | self._wanted.get(ALL_STREAMS, frozenset())
        images |= packet.jpegs.keys()
        images |= {key[2] for key in self._encodings if key[:2] == (stream_id, packet.seq)}
        width = packet.result.frame.image.shape[1]
        return {image for image in images if scales(image, width)}

    async def with_variant(self, packet: FramePacket, variant: Variant) -> FramePacket:
        """``packet`` with ``variant`` encoded too, off the loop and once however many ask at the same time.

        While ``packet`` is still its stream's newest frame the JPEG is kept there, for whoever asks
        next. A caller cancelled while it waits (a viewer that left) leaves the encoding to the others.
        """
        jpeg = await asyncio.shield(self._encoding(packet, variant))
        current = self._latest.get(packet.stream_id)
        if current is not None and current.result is packet.result and variant in current.jpegs:
            return current  # as `_encoded` stored it
        return packet.with_jpeg(variant, jpeg)

    def _encoding(self, packet: FramePacket, variant: Variant) -> asyncio.Future[bytes]:
        """The encoding of ``packet`` as ``variant`` in a worker thread: the one under way, or a new one."""
        key = (packet.stream_id, packet.seq, variant)
        encoding = self._encodings.get(key)
        if encoding is None:
            encoding = self._loop.run_in_executor(None, _encode_one, packet, variant, self.jpeg_quality)
            self._encodings[key] = encoding
            encoding.add_done_callback(functools.partial(self._encoded, key, packet))
        return encoding

    def _encoded(self, key: tuple[str, int, Variant], packet: FramePacket, encoding: asyncio.Future[bytes]) -> None:
        """Keep a finished encoding's JPEG with its frame while that is the stream's newest, and forget the
        encoding, so a failed one is tried afresh (its failure logged once for all its callers).

        Kept here, before any caller resumes: one that asks after the encoding is forgotten finds it."""
        if self._encodings.get(key) is encoding:
            del self._encodings[key]
        if encoding.cancelled():
            return
        if (failure := encoding.exception()) is not None:
            stream_id, seq, variant = key
            log.error(
                "[%s] could not encode frame %d as %s image of max_width %s",
                stream_id,
                seq,
                variant.kind.value,
                variant.max_width,
                exc_info=failure,
            )
            return
        current, variant = self._latest.get(packet.stream_id), key[2]
        if current is not None and current.result is packet.result and variant not in current.jpegs:
            self._latest[packet.stream_id] = current.with_jpeg(variant, encoding.result())

    def forget(self, stream_id: str) -> None:
        """Let a restarted stream's frames be encoded afresh, though they may reuse a seq of the old source's.

        Encodings under way finish for those already waiting on them.
        """
        for key in [key for key in self._encodings if key[0] == stream_id]:
            del self._encodings[key]


def scales(image: Variant, frame_width: int | None) -> bool:
    """Whether ``image`` is scaled down from a frame ``frame_width`` wide (`Variant.size`); where the
    width is not known (None), whether it has a ``max_width`` at all."""
    return image.max_width is not None and (frame_width is None or image.max_width < frame_width)


def _nearest(asked: Variant, scaled: Iterable[Variant]) -> Variant:
    """The image of ``scaled`` of ``asked``'s kind nearest its width: the widest not wider, else the
    narrowest; the full size where ``scaled`` has none of its kind."""
    assert asked.max_width is not None
    widths = [image.max_width for image in scaled if image.kind is asked.kind and image.max_width is not None]
    narrower = [width for width in widths if width <= asked.max_width]
    if narrower:
        return Variant(asked.kind, max(narrower))
    return Variant(asked.kind, min(widths)) if widths else asked.full_size


def _encode_one(packet: FramePacket, variant: Variant, jpeg_quality: int) -> bytes:
    return encode_variants(packet.result, frozenset({variant}), jpeg_quality)[variant]
