"""What a stream's options ask of the model's detections before its tracker sees them: its classes,
and the lowest confidence its tracker uses (`server.tracking.stream.StreamTracker` applies both; what
they leave out by size and place is `server.tracking.object_filter`'s)."""

from __future__ import annotations

from server.analytics.shapes import unknown_class
from server.options import StreamOptions


def detection_conf(options: StreamOptions) -> float:
    """The lowest confidence the stream's tracker uses: the model must be run at least this low.

    A partly hidden object scores low. ByteTrack and its kin keep a track alive through that with a
    second association over detections down to ``track_low_thresh``, so those must reach the
    tracker even though only tracks at the stream's ``conf`` are reported.
    """
    low = options.tracker_config().get("track_low_thresh", options.conf)
    return min(options.conf, float(low)) if isinstance(low, int | float) else options.conf


def class_ids(class_names: dict[int, str], wanted: tuple[str, ...]) -> frozenset[int] | None:
    """The model's class ids for the names in ``wanted`` (None: all); ValueError names any unknown one."""
    if not wanted:
        return None
    by_name = {name: class_id for class_id, name in class_names.items()}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise ValueError(f"classes: {unknown_class(unknown[0], class_names)}")
    return frozenset(by_name[name] for name in wanted)
