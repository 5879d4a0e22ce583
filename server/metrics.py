"""Prometheus metrics in the text exposition format, written by hand (no client library needed).

Everything is read at scrape time from the stream manager and the hub, so there is no second set of
counters to keep in step. Stream ids are label values; they are already restricted to
``[A-Za-z0-9_-]``, so they need no escaping.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.hub import Hub
from server.sources.base import StreamState
from server.streams import StreamManager

Sample = tuple[dict[str, str], float]


def render_metrics(manager: StreamManager, hub: Hub) -> str:
    infos = manager.streams()
    families: list[tuple[str, str, str, list[Sample]]] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        families.append((name, kind, help_text, list(samples)))

    stats = {info.stream_id: hub.stats(info.stream_id) for info in infos}
    family(
        "segcast_stream_state",
        "gauge",
        "1 for the state each stream is in now.",
        (({"stream": i.stream_id, "state": s.value}, float(i.state is s)) for i in infos for s in StreamState),
    )
    family(
        "segcast_frames_read_total",
        "counter",
        "Frames decoded from the source.",
        (({"stream": i.stream_id}, i.frames_read) for i in infos),
    )
    family(
        "segcast_frames_processed_total",
        "counter",
        "Frames run through the model and tracker.",
        (({"stream": i.stream_id}, i.frames_processed) for i in infos),
    )
    family(
        "segcast_frames_dropped_total",
        "counter",
        "Frames replaced by a newer one before inference took them.",
        (({"stream": i.stream_id}, i.frames_dropped) for i in infos),
    )
    family(
        "segcast_input_fps",
        "gauge",
        "Frames per second the source delivers (last few seconds).",
        (({"stream": i.stream_id}, i.status.input_fps) for i in infos),
    )
    family(
        "segcast_processed_fps",
        "gauge",
        "Frames per second processed (last few seconds).",
        (({"stream": s}, v["processed_fps"] or 0.0) for s, v in stats.items()),
    )
    family(
        "segcast_reconnects_total",
        "counter",
        "Connections to the source lost or refused.",
        (({"stream": i.stream_id}, i.status.reconnects) for i in infos),
    )
    family(
        "segcast_latency_seconds",
        "gauge",
        "Mean time from decoding a frame to handing it to viewers (last few seconds).",
        (({"stream": s}, (v["latency_ms"] or 0.0) / 1000) for s, v in stats.items()),
    )
    family(
        "segcast_viewers",
        "gauge",
        "Viewers (WebSocket and MJPEG) watching each stream.",
        (({"stream": i.stream_id}, hub.viewer_count(i.stream_id)) for i in infos),
    )
    family(
        "segcast_image_variants",
        "gauge",
        "Images (kind and size) its viewers want encoded of each frame of each stream.",
        (({"stream": i.stream_id}, hub.variants_wanted(i.stream_id)) for i in infos),
    )
    family("segcast_streams", "gauge", "Streams configured.", [({}, len(infos))])
    family("segcast_clients", "gauge", "Connected viewers of any kind.", [({}, len(hub.viewers))])
    family(
        "segcast_viewers_refused_total",
        "counter",
        "WebSocket and MJPEG viewers refused, by the [server] limit that refused them.",
        (({"limit": limit}, hub.refused[limit]) for limit in ("max_viewers", "max_viewers_per_address")),
    )
    family(
        "segcast_scaled_images_refused_total",
        "counter",
        "Subscriptions to a scaled image given the full size instead ([server] max_scaled_images).",
        [({}, hub.scaled_images_refused)],
    )
    family("segcast_inference_cycles_total", "counter", "Model batches run.", [({}, manager.worker.cycles)])
    family(
        "segcast_encoded_images_total", "counter", "JPEG images encoded, all variants.", [({}, manager.encoder.encoded)]
    )
    family(
        "segcast_encoder_dropped_total",
        "counter",
        "Results replaced before the encoder took them.",
        [({}, manager.encoder.dropped)],
    )
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            number = str(value) if isinstance(value, int) else repr(float(value))
            lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    return "\n".join(lines) + "\n"
