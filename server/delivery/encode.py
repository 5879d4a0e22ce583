"""The encoder thread: annotate and JPEG-encode each result once per wanted variant, for every viewer.

It sits between the inference thread and the hub so that neither the model nor the event loop pays
for drawing and compression. Its input is a latest-only slot per stream: if encoding ever falls
behind, a stream's older result is replaced (and counted), never queued.

Encoding is lazy: the hub tells the encoder which image variants (annotated or clean, full size or
scaled down) some viewer of a stream wants, and only those are made. A variant wanted by a hundred
viewers is still encoded once per frame; a stream nobody watches costs only its metadata.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import cv2

from server.delivery.annotate import annotated_picture
from server.frames import FrameResult, new_event_id

log = logging.getLogger(__name__)

JPEG_QUALITY = 80
IDLE_POLL_S = 0.1
JOIN_TIMEOUT_S = 2.0
MIN_WIDTH_PX = 32
MAX_WIDTH_PX = 7680
#: The widths a scaled image may have. A requested ``max_width`` is rounded down to one of them, so
#: viewers asking for nearly the same size share one encoding, and a client cannot make the encoder
#: work once more per frame for each of thousands of distinct widths.
WIDTH_STEPS_PX = (32, 48, 64, 96, 128, 160, 192, 240, 320, 384, 480, 640, 800, 960, 1280, 1600, 1920, 2560, 3840, 7680)
#: Where the hub lists variants wanted for every stream (viewers subscribed to "*").
ALL_STREAMS = "*"


class ImageKind(enum.Enum):
    ANNOTATED = "annotated"  # masks, boxes, labels and trails drawn by the server
    CLEAN = "clean"  # the frame as decoded, for clients that draw overlays themselves


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of sending a frame's image; viewers asking for the same variant share its bytes."""

    kind: ImageKind = ImageKind.ANNOTATED
    max_width: int | None = None  # None: the frame's own size; never scaled up

    @property
    def full_size(self) -> Variant:
        """The variant of the same kind at the frame's own size."""
        return Variant(self.kind)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The JPEG's pixel size for a frame of ``width`` x ``height``, aspect ratio kept."""
        if self.max_width is None or self.max_width >= width:
            return width, height
        return self.max_width, max(1, round(height * self.max_width / width))


#: The ``image`` a client may ask for to be sent no picture, only metadata (WebSocket subscriptions).
NO_IMAGE = "none"


def parse_variant(kind: object, max_width: object = None) -> Variant | None:
    """The variant a client asked for: ``kind`` is "annotated", "clean" or "none" (metadata only).

    ``max_width`` is rounded down to one of `WIDTH_STEPS_PX`. Raises ValueError naming the bad field;
    used by the WebSocket.
    """
    if kind == NO_IMAGE:
        return None
    return _parse_image(kind, max_width, [*(k.value for k in ImageKind), NO_IMAGE])


def parse_picture(kind: object, max_width: object = None) -> Variant:
    """`parse_variant` for URLs that serve pictures (snapshot, MJPEG), where "none" is no choice: an
    error offers only the kinds that would do."""
    return _parse_image(kind, max_width, [k.value for k in ImageKind])


def _parse_image(kind: object, max_width: object, choices: list[str]) -> Variant:
    if kind not in [k.value for k in ImageKind]:
        raise ValueError(f"image: expected one of {', '.join(choices)}, got {kind!r}")
    if max_width is not None and (
        isinstance(max_width, bool) or not isinstance(max_width, int) or not MIN_WIDTH_PX <= max_width <= MAX_WIDTH_PX
    ):
        raise ValueError(f"max_width: expected pixels from {MIN_WIDTH_PX} to {MAX_WIDTH_PX}, got {max_width!r}")
    if max_width is not None:
        max_width = max(step for step in WIDTH_STEPS_PX if step <= max_width)
    return Variant(ImageKind(kind), max_width)


@dataclass(frozen=True, slots=True)
class FramePacket:
    """A processed frame ready for viewers: its metadata serialised once, and a JPEG per encoded variant.

    ``metadata`` is the protocol's ``frame`` message (see docs/protocol.md); `message` adds the one
    field that differs between viewers, which image (if any) follows it on the socket.
    """

    result: FrameResult
    metadata: Mapping[str, object]
    metadata_text: str
    jpegs: Mapping[Variant, bytes] = field(default_factory=lambda: MappingProxyType({}))
    #: `message` per variant, made for the first viewer that needs it (on the event loop only).
    _messages: dict[Variant | None, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def stream_id(self) -> str:
        return self.result.frame.stream_id

    @property
    def seq(self) -> int:
        return self.result.frame.seq

    def message(self, variant: Variant | None) -> str:
        """The ``frame`` text message for a viewer that gets ``variant`` (None: metadata only)."""
        message = self._messages.get(variant)
        if message is not None:
            return message
        if variant is None:
            image = "null"
        else:
            height, width = self.result.frame.image.shape[:2]
            w, h = variant.size(width, height)
            image = json.dumps(
                {"kind": variant.kind.value, "width": w, "height": h, "bytes": len(self.jpegs[variant])},
                separators=(",", ":"),
            )
        message = self._messages[variant] = f'{self.metadata_text[:-1]},"image":{image}}}'
        return message

    def with_jpeg(self, variant: Variant, jpeg: bytes) -> FramePacket:
        """The same frame with one more variant (encoded late, for a new viewer or a snapshot)."""
        return FramePacket(
            self.result, self.metadata, self.metadata_text, MappingProxyType({**self.jpegs, variant: jpeg})
        )


def make_packet(result: FrameResult, jpegs: Mapping[Variant, bytes]) -> FramePacket:
    """The packet of ``result``, each of its events given its ``event_id`` here, once, before the hub
    hands the frame to the viewers and the event outputs: the WebSocket's event messages, the ``frame``
    message, webhooks, MQTT and the history then carry the same id for it (docs/protocol.md), so a
    WebSocket client can find an event in the history and resume from there, or tell it from the same
    event come by a webhook."""
    metadata = result.metadata_json()
    metadata["events"] = [{**event.to_json(), "event_id": new_event_id()} for event in result.events]
    return FramePacket(result, metadata, json.dumps(metadata, separators=(",", ":")), MappingProxyType(dict(jpegs)))


def encode_variants(
    result: FrameResult, variants: frozenset[Variant], jpeg_quality: int = JPEG_QUALITY
) -> dict[Variant, bytes]:
    """JPEGs of ``result`` for each of ``variants``; the overlay is drawn at most once per distinct size.

    A scaled annotated variant has its overlay drawn on the scaled picture (`annotated_picture`), not
    shrunk from the full-size one, so its labels stay readable in a small embed or grid tile.
    Variants that come out the same (a ``max_width`` at or above the frame's width is its full size)
    are encoded once and share their bytes: `encodings` counts what was really encoded.
    """
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    image = result.frame.image
    height, width = image.shape[:2]
    made: dict[tuple[ImageKind, tuple[int, int]], bytes] = {}
    jpegs: dict[Variant, bytes] = {}
    for variant in variants:
        size = variant.size(width, height)
        key = (variant.kind, size)
        if key not in made:
            if variant.kind is ImageKind.ANNOTATED:
                source = annotated_picture(result, size)
            elif size != (width, height):
                source = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            else:
                source = image
            ok, buffer = cv2.imencode(".jpg", source, params)
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            made[key] = buffer.tobytes()
        jpegs[variant] = made[key]
    return jpegs


def encodings(jpegs: Mapping[Variant, bytes]) -> int:
    """How many JPEGs `encode_variants` really made for ``jpegs`` (variants may share one)."""
    return len({id(jpeg) for jpeg in jpegs.values()})


class Encoder:
    """The encoder thread. `submit` comes from the inference thread, `set_wanted` from the loop."""

    def __init__(self, on_packet: Callable[[FramePacket], None], jpeg_quality: int = JPEG_QUALITY) -> None:
        self._on_packet = on_packet
        self.jpeg_quality = jpeg_quality
        self._lock = threading.Lock()
        self._pending: dict[str, FrameResult] = {}
        self._wanted: Mapping[str, frozenset[Variant]] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="encoder", daemon=True)
        self.dropped = 0
        self.encoded = 0
        #: Streams whose last frame could not be encoded (kept by the encoder thread; `forget` drops one).
        self._failing: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._ready.set()
        self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("encoder thread did not stop within %.1f s", JOIN_TIMEOUT_S)

    def submit(self, result: FrameResult) -> None:
        """Called from the inference thread; never blocks on encoding."""
        with self._lock:
            pending = self._pending.get(result.frame.stream_id)
            if pending is not None:
                self.dropped += 1
                result = result.replacing(pending)  # the frame may go, its track events may not
            self._pending[result.frame.stream_id] = result
        self._ready.set()

    def forget(self, stream_id: str) -> None:
        """Drop a removed stream's result waiting for the encoder, so it is neither encoded nor published
        after the removal (one being encoded then still is: the hub drops it, as a removed stream's); a
        stream added again under its id has its first failure to encode logged afresh."""
        with self._lock:
            self._pending.pop(stream_id, None)
            self._failing.discard(stream_id)

    def set_wanted(self, wanted: Mapping[str, frozenset[Variant]]) -> None:
        """Which variants to make from now on, per stream id (and `ALL_STREAMS` for every stream)."""
        with self._lock:
            self._wanted = dict(wanted)

    def wanted_for(self, stream_id: str) -> frozenset[Variant]:
        with self._lock:
            return self._wanted.get(stream_id, frozenset()) | self._wanted.get(ALL_STREAMS, frozenset())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._ready.wait(IDLE_POLL_S)
            self._ready.clear()
            self._publish_pending()
        # The worker has stopped before us: what it handed over last, while a frame was being
        # published, still carries track events that the event outputs (stopped after us) must see.
        self._publish_pending()

    def _publish_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for stream_id, result in pending.items():
            try:
                self._on_packet(make_packet(result, self._images(stream_id, result)))
            except Exception:
                log.exception("[%s] could not publish frame %d", stream_id, result.frame.seq)

    def _images(self, stream_id: str, result: FrameResult) -> dict[Variant, bytes]:
        """The wanted JPEGs of ``result``, or none if they cannot be made.

        A frame without images still carries its metadata and its track and analytics events, which
        must never be lost with the picture. A stream whose frames keep failing is logged when it
        starts to and when it stops, not at every frame.
        """
        try:
            jpegs = encode_variants(result, self.wanted_for(stream_id), self.jpeg_quality)
        except Exception:
            if stream_id not in self._failing:
                self._failing.add(stream_id)
                log.exception(
                    "[%s] could not encode frame %d; frames go out without images until one encodes",
                    stream_id,
                    result.frame.seq,
                )
            return {}
        if stream_id in self._failing:
            self._failing.discard(stream_id)
            log.info("[%s] frames are encoded again from frame %d", stream_id, result.frame.seq)
        self.encoded += encodings(jpegs)
        return jpegs
