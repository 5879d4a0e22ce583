"""Prometheus metrics in the text exposition format, written by hand (no client library needed).

Everything is read at scrape time from the stream manager, the hub and the WebRTC peers, so there is
no second set of counters to keep in step. Stream ids are label values; they are already restricted to
``[A-Za-z0-9_-]``, so they need no escaping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from server.analytics.engine import DIRECTIONS
from server.analytics.events import DWELL_BUCKETS_S, Counts
from server.config import StreamConfig
from server.delivery.hub import Hub
from server.delivery.viewer import MAX_PENDING_EVENTS
from server.events.sink import SinkHealth, SinkState
from server.http.network.connections import ConnectionCounter
from server.http.process_metrics import process_figures
from server.inference.models import ModelError
from server.inference.pace import (
    BEHIND_BELOW_SHARE,
    BEHIND_HELD_S,
    BUSY_WINDOW_S,
    KEEPS_UP_FROM_SHARE,
    PACE_WINDOW_S,
    PAUSED_AFTER_INTERVALS,
    PAUSED_AFTER_S,
)
from server.sources.base import StreamState
from server.sources.uri import mask_uri
from server.stream_info import StreamInfo
from server.streams import StreamManager
from server.triton.transport import TritonEndpoint
from server.version import INSTALLED_VERSION
from server.webrtc.peer import PeerCounts

Sample = tuple[dict[str, str], float]


#: The segcast version this node runs, for ``segcast_build_info`` and ``/healthz``.
SEGCAST_VERSION = INSTALLED_VERSION or "unknown"


def render_metrics(
    manager: StreamManager,
    hub: Hub,
    outputs: Sequence[SinkHealth] = (),
    webrtc: PeerCounts | None = None,
    connections: ConnectionCounter | None = None,
    *,
    event_loop_tasks: int,
    auth_refused: Mapping[str, int] | None = None,
) -> str:
    """The exposition text; ``webrtc``: the peers' counts, where the app serves WebRTC; ``connections``:
    the open connections' counter, where the server limits them (`segcast serve`); ``event_loop_tasks``:
    the tasks alive on the server's event loop (a number that only grows is a task leak); ``auth_refused``:
    requests refused for their credential by reason, where the app checks them (`server.http.access.auth`)."""
    infos = manager.streams()
    families: list[tuple[str, str, str, list[Sample]]] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        families.append((name, kind, help_text, list(samples)))

    stats = {info.stream_id: hub.stats(info.stream_id) for info in infos}
    family(
        "segcast_build_info",
        "gauge",
        "Always 1: the segcast version this node runs (a development version ends in .devN). Joins a node's "
        "series to its version: `* on (instance) group_left (version) segcast_build_info`.",
        [({"version": SEGCAST_VERSION}, 1)],
    )
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
        "segcast_frames_thinned_total",
        "counter",
        "Frames left out by the stream's process_fps, never sent to the model (by choice: not dropped).",
        (({"stream": i.stream_id}, i.frames_thinned) for i in infos),
    )
    family(
        "segcast_detections_ignored_total",
        "counter",
        "Detections the stream's min_area, max_area, ignore_zones and class_filters kept from its tracker (never "
        "tracked nor sent).",
        (({"stream": i.stream_id}, i.detections_ignored) for i in infos),
    )
    family(
        "segcast_input_fps",
        "gauge",
        "Frames per second the source delivers (last few seconds).",
        (({"stream": i.stream_id}, round(i.status.input_fps, 2)) for i in infos),
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
        "Mean time from decoding a frame to handing it to viewers (last few seconds); no sample for a "
        "stream with no frame processed in that time (stalled, reconnecting, ended, inference unavailable).",
        # Not 0: a stream whose frames stopped would read as the fastest, and `latency > x` never fire.
        (
            ({"stream": s}, round(latency_ms / 1000, 4))
            for s, v in stats.items()
            if (latency_ms := v["latency_ms"]) is not None
        ),
    )
    behind = manager.behind_held()
    family(
        "segcast_stream_behind",
        "gauge",
        f"1 while under {BEHIND_BELOW_SHARE:.0%} of the stream's input frames (of those its process_fps wants) "
        f"reach the model, over the last {PACE_WINDOW_S:g} s (0 again from {KEEPS_UP_FROM_SHARE:.0%}): the node "
        f"is short of inference. Not judged in its first {PACE_WINDOW_S:g} s live, while it is not live, its "
        f"input paused (no frame for {PAUSED_AFTER_S:g} s or {PAUSED_AFTER_INTERVALS} of its frame intervals, "
        "whichever is longer) or inference unavailable, nor for a #rate=max file: 0 then, but a 1 holds for "
        f"{BEHIND_HELD_S:g} s while the stream is not judged (a restart, a stall), so such a gap does not reset "
        "an alert's for:.",
        (({"stream": i.stream_id}, float(i.stream_id in behind)) for i in infos),
    )
    family(
        "segcast_viewers",
        "gauge",
        "Viewers watching each stream's pictures: WebSocket, MJPEG and WebRTC players (metadata-only WebSockets not).",
        (({"stream": i.stream_id}, hub.viewer_count(i.stream_id)) for i in infos),
    )
    family(
        "segcast_image_variants",
        "gauge",
        "Images (kind and size) its viewers want encoded of each frame of each stream.",
        (({"stream": i.stream_id}, hub.variants_wanted(i.stream_id)) for i in infos),
    )
    family("segcast_streams", "gauge", "Streams configured.", [({}, len(infos))])
    family(
        "segcast_clients",
        "gauge",
        "Open WebSocket and MJPEG connections (WebRTC players: segcast_webrtc_peers).",
        [({}, len(hub.viewers))],
    )
    family(
        "segcast_viewers_refused_total",
        "counter",
        "WebSocket and MJPEG viewers refused, by the [server] limit that refused them.",
        (({"limit": limit}, hub.refused[limit]) for limit in ("max_viewers", "max_viewers_per_address")),
    )
    if auth_refused is not None:
        family(
            "segcast_auth_refused_total",
            "counter",
            "Requests refused for their credential (401, or 403 for a viewer's token where an admin's is needed "
            "or a scoped token outside its scope), by reason: missing, wrong (not valid here: unknown, forged or "
            "revoked), expired (a signed token), in_address (a configured token in ?token=), role_too_low, "
            "out_of_scope (a scoped signed token, such as a dashboard's link, asked for what it does not open). "
            "Each client address is logged at most once a minute.",
            (({"reason": reason}, n) for reason, n in auth_refused.items()),
        )
    if connections is not None:
        family("segcast_connections", "gauge", "Open HTTP connections, viewers included.", [({}, connections.total)])
        family(
            "segcast_connections_refused_total",
            "counter",
            "Connections refused as they were accepted (503), by the limit: all open ones, or one address's.",
            (({"limit": limit}, n) for limit, n in connections.refused_by.items()),
        )
    family(
        "segcast_scaled_images_refused_total",
        "counter",
        "Subscriptions and snapshots asking for a scaled image beyond [server] max_scaled_images, given "
        "another size instead.",
        [({}, hub.scaled_images_refused)],
    )
    family(
        "segcast_viewer_frames_skipped_total",
        "counter",
        "Frames WebSocket and MJPEG clients were not sent, a newer one taking the place of each while they "
        "still took an older one: slow links, or clients that stopped reading.",
        [({}, hub.frames_skipped)],
    )
    family(
        "segcast_viewers_closed_too_slow_total",
        "counter",
        f"WebSocket clients closed with 1013 for letting {MAX_PENDING_EVENTS} events pile up.",
        [({}, hub.closed_too_slow)],
    )
    if webrtc is not None:
        family(
            "segcast_webrtc_peers",
            "gauge",
            "WebRTC peers holding a slot (answered, connecting or connected), by role.",
            [({"role": "publisher"}, webrtc.publishers), ({"role": "player"}, webrtc.players)],
        )
        family(
            "segcast_webrtc_refused_total",
            "counter",
            "WebRTC offers refused (503), by the limit that refused them.",
            (({"reason": reason}, n) for reason, n in webrtc.refused.items()),
        )
        skipped = webrtc.skipped
        family(
            "segcast_webrtc_frames_skipped_total",
            "counter",
            "Video frames WebRTC peers let go of for newer ones, closed peers included: a player's encoder too slow "
            "to take them, or a publisher's stream not reading them in time.",
            [({"role": "player"}, skipped.player_frames), ({"role": "publisher"}, skipped.publisher_frames)],
        )
        family(
            "segcast_webrtc_metadata_skipped_total",
            "counter",
            "Frame metadata not sent to WebRTC players, their data channel too far behind (overlays drawn late).",
            [({}, skipped.player_metadata)],
        )
    family("segcast_inference_cycles_total", "counter", "Model batches run.", [({}, manager.worker.cycles)])
    family(
        "segcast_inference_busy",
        "gauge",
        f"Share of the last {BUSY_WINDOW_S:g} s the inference thread spent on batches rather than waiting for "
        "frames; near 1, streams skip frames (segcast_stream_behind).",
        [({}, round(manager.worker.busy.share(), 3))],
    )
    family(
        "segcast_inference_errors_total",
        "counter",
        "Frames the model or tracker failed on, inference being unavailable included.",
        (({"stream": i.stream_id}, i.inference_errors) for i in infos),
    )
    worker = manager.worker
    family(
        "segcast_inference_available",
        "gauge",
        "1 while frames can be inferred; 0 while a remote model's server cannot be reached.",
        [({}, float(worker.inference_status.available))],
    )
    family(
        "segcast_model_info",
        "gauge",
        "Always 1: the model this node runs, as --model names it (a password masked), and for a model on "
        "Triton the server's host:port (empty for a model run here). Joins a node's series to its model: "
        "`* on (instance) group_left (model) segcast_model_info`.",
        [(model_labels(worker.model_spec), 1)],
    )
    remote = worker.remote_stats
    if remote is not None:
        family(
            "segcast_remote_requests_total",
            "counter",
            "Requests sent to Triton: inference, and the model's description read at start, at each attempt "
            "after an outage and every few seconds while frames are sent.",
            [({}, remote.requests)],
        )
        family(
            "segcast_remote_request_failures_total",
            "counter",
            "Requests to Triton that failed (unreachable, timed out, failed by the server, refused), descriptions "
            "included.",
            [({}, remote.failed_requests)],
        )
        family(
            "segcast_remote_request_seconds_total",
            "counter",
            "Time spent waiting for Triton's answers.",
            [({}, remote.request_seconds)],
        )
    family(
        "segcast_encoded_images_total", "counter", "JPEG images encoded, all variants.", [({}, manager.encoder.encoded)]
    )
    family(
        "segcast_encoder_dropped_total",
        "counter",
        "Results replaced before the encoder took them.",
        [({}, manager.encoder.dropped)],
    )
    analytics = _analytics_families(manager, infos, family)
    if outputs:
        family(
            "segcast_event_output_up",
            "gauge",
            "0 while an event output's destination fails or cannot be reached, else 1.",
            (({"output": h.name}, float(h.state is not SinkState.FAILING)) for h in outputs),
        )
        family(
            "segcast_event_output_queued",
            "gauge",
            "Events an output has yet to send: queued, on their way, or being retried.",
            (({"output": h.name}, h.queued) for h in outputs),
        )
        for suffix, help_text in (
            ("delivered", "Events an output delivered (stored, posted, published)."),
            (
                "dropped",
                "Events an output dropped: its queue was full, they were older than its max_event_age_s when they "
                "could be sent, or left unsent at shutdown.",
            ),
            ("failed", "Events an output gave up on after an error (retries spent, database error)."),
            (
                "upkeep_failures",
                "Upkeep that failed and cost no event (history: deleting old events, reading a damaged file).",
            ),
        ):
            family(
                f"segcast_event_output_{suffix}_total",
                "counter",
                help_text,
                (({"output": h.name}, getattr(h, suffix)) for h in outputs),
            )
    family(
        "segcast_event_loop_tasks",
        "gauge",
        "asyncio tasks alive on the server's event loop: one per open connection and per viewer, and the server's own.",
        [({}, event_loop_tasks)],
    )
    for name, kind, help_text, value in process_figures():
        family(name, kind, help_text, [({}, value)])
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            number = str(value) if isinstance(value, int) else repr(float(value))
            lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    lines += _dwell_lines(analytics)
    return "\n".join(lines) + "\n"


def _analytics_families(
    manager: StreamManager, infos: list[StreamInfo], family: Callable[[str, str, str, Iterable[Sample]], None]
) -> dict[str, Counts]:
    """Zone occupancy and line crossings of the streams that have zones or lines; returns their counts.

    Zone and line names are restricted like stream ids; class names come from the model (escaped when written).
    While a stream is not live (its camera reconnecting) or inference is unavailable (a remote
    model's server down) its occupancy has no samples: no frame of the scene now is inferred, so what
    is in a zone is unknown, and the last frame's count would pass for it (``segcast_stream_state``
    and ``segcast_inference_available`` say why). Crossings and dwell are totals so far, and stay.
    """
    counts: dict[str, Counts] = {}
    for info in infos:
        found = manager.worker.counts(info.stream_id)
        if found is not None:
            counts[info.stream_id] = found
    current = {info.stream_id for info in infos if manager.is_current(info)}
    family(
        "segcast_zone_objects",
        "gauge",
        "Tracked objects in each zone now, by class; a zone with no class listed yet (it watches every "
        "class and nothing has entered it) has one sample without a class, at 0. No samples while the "
        "stream is not live (segcast_stream_state) or inference is unavailable (segcast_inference_available 0).",
        zone_object_samples({stream: found for stream, found in counts.items() if stream in current}),
    )
    configs = {info.stream_id: info.config for info in infos}
    family(
        "segcast_line_crossings_any_class_total",
        "counter",
        "Line crossings by direction, of objects of every class the line counts (at 0 from the start): the "
        "total to graph and alert on. Since the stream's tracking last (re)started or the line was moved or renamed.",
        line_total_samples(counts, configs),
    )
    family(
        "segcast_line_crossings_total",
        "counter",
        "Line crossings by direction and class, as segcast_line_crossings_any_class_total: a line limited to classes "
        "lists each at 0 from the start, one counting every class each class from its first crossing.",
        line_crossing_samples(counts, configs),
    )
    return counts


def line_total_samples(counts: Mapping[str, Counts], configs: Mapping[str, StreamConfig]) -> Iterator[Sample]:
    """``segcast_line_crossings_any_class_total``: one sample per line and direction, every class summed.

    Every line is listed from the start, at 0: Prometheus' ``increase()`` and ``rate()`` take a series'
    first sample as its start, so a series that appeared with its first crossing, at 1, had that crossing
    left out of every panel. The start is the stream's, not its first frame's: a line of ``configs`` its
    counts do not have (its camera never worked, the line was added since its last frame, or it does not
    fit the frame, which the stream's analytics error says) is listed at 0 all the same.
    """
    for stream, config in configs.items():
        for line, by_class in _lines(counts.get(stream), config).items():
            for direction in DIRECTIONS:
                total = sum(directions.get(direction, 0) for directions in by_class.values())
                yield {"stream": stream, "line": line, "direction": direction}, total


def line_crossing_samples(counts: Mapping[str, Counts], configs: Mapping[str, StreamConfig]) -> Iterator[Sample]:
    """``segcast_line_crossings_total``: one sample per line, class and direction.

    A line limited to classes lists each at 0 from the start, for the reason `line_total_samples` gives.
    One that watches every class, as the viewer's *Add line* draws it, lists a class from its first
    crossing: listing every class the model knows at 0 made 160 series of each such line for an 80-class
    model, nearly all 0 for ever (a fleet's cameras' lines, tens of thousands, over a hosted Prometheus'
    limit). Totals come from the any-class family, which misses no first crossing.
    """
    for stream, config in configs.items():
        limited = {line.name: line.classes for line in config.options.lines if line.classes}
        for line, by_class in _lines(counts.get(stream), config).items():
            unseen: dict[str, Mapping[str, int]] = {name: {} for name in limited.get(line, ())}
            for name, directions in (unseen | dict(by_class)).items():
                for direction in DIRECTIONS:
                    labels = {"stream": stream, "line": line, "direction": direction, "class": name}
                    yield labels, directions.get(direction, 0)


def _lines(found: Counts | None, config: StreamConfig) -> dict[str, Mapping[str, Mapping[str, int]]]:
    """The crossings by class and direction of every line of ``config``, those its counts lack as none."""
    lines: dict[str, Mapping[str, Mapping[str, int]]] = {line.name: {} for line in config.options.lines}
    lines |= found.lines if found is not None else {}
    return lines


def zone_object_samples(counts: Mapping[str, Counts]) -> Iterator[Sample]:
    """``segcast_zone_objects`` of each stream's counts: one sample per zone and class.

    A zone lists the classes it is limited to, and every class once seen in it, at 0 when none is
    inside. A zone that has neither (it watches every class, and nothing has entered it yet) has one
    sample without a ``class`` label, at 0, so that it reads 0 rather than "no data" from the start.
    That sample is never beside a zone's class samples, so a sum by zone, or by zone and class, never
    counts an object twice.
    """
    for stream, found in counts.items():
        for zone, by_class in found.zones.items():
            if not by_class:
                yield {"stream": stream, "zone": zone}, 0
            for name, n in by_class.items():
                yield {"stream": stream, "zone": zone, "class": name}, n


def model_labels(spec: str) -> dict[str, str]:
    """``segcast_model_info``'s labels for ``--model spec``: ``model``, the spec with any password masked
    (a group of nodes is told by the model it runs), and ``server``, the Triton server's host:port, its
    default port filled in, where the spec names one; empty for a model run here, and for a Triton URL the
    node refuses (with credentials, say), which a running node never has."""
    try:
        endpoint = TritonEndpoint.parse(spec)
    except (ModelError, ValueError):  # as `runs_here`: a URL that cannot be read names no server
        endpoint = None
    return {"model": mask_uri(spec), "server": "" if endpoint is None else endpoint.address}


def _dwell_lines(counts: dict[str, Counts]) -> list[str]:
    """``segcast_zone_dwell_seconds``, a histogram: its buckets, sum and count share one HELP and TYPE."""
    name = "segcast_zone_dwell_seconds"
    lines = [f"# HELP {name} How long finished zone visits lasted (media time).", f"# TYPE {name} histogram"]
    for stream, found in counts.items():
        for zone, histogram in found.dwell.items():
            labels = f'stream="{stream}",zone="{zone}"'
            for bound, n in zip(DWELL_BUCKETS_S, histogram.buckets, strict=True):
                lines.append(f'{name}_bucket{{{labels},le="{bound!r}"}} {n}')
            lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {histogram.count}')
            lines.append(f"{name}_sum{{{labels}}} {histogram.total_s!r}")
            lines.append(f"{name}_count{{{labels}}} {histogram.count}")
    return lines


def _escape(value: str) -> str:
    """A label value as the exposition format quotes it (an output's name comes from a URL)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
