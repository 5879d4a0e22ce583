"""What a stream's options ask of the model's detections before its tracker sees them: its classes,
and the lowest confidence its tracker uses (`server.tracking.stream.StreamTracker` applies both; what
they leave out by size and place is `server.tracking.object_filter`'s); and which of the model's classes
have filters of their own."""

from __future__ import annotations

from server.analytics.shapes import check_classes, unknown_class
from server.options import ClassFilter, StreamOptions


def detection_conf(options: StreamOptions) -> float:
    """The lowest confidence the stream's tracker uses: the model must be run at least this low.

    A partly hidden object scores low. ByteTrack and its kin keep a track alive through that with a
    second association over detections down to ``track_low_thresh``, so those must reach the
    tracker even though only tracks at the stream's ``conf`` (or their class filter's) are reported.
    """
    lowest = options.lowest_conf
    low = options.tracker_config().get("track_low_thresh", lowest)
    return min(lowest, float(low)) if isinstance(low, int | float) else lowest


def class_ids(class_names: dict[int, str], wanted: tuple[str, ...]) -> frozenset[int] | None:
    """The model's class ids for the names in ``wanted`` (None: all); ValueError names any unknown one."""
    if not wanted:
        return None
    by_name = {name: class_id for class_id, name in class_names.items()}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise ValueError(f"classes: {unknown_class(unknown[0], class_names)}")
    return frozenset(by_name[name] for name in wanted)


def class_filters_by_id(class_names: dict[int, str], options: StreamOptions) -> dict[int, ClassFilter]:
    """The stream's class filters by the model's class id; ValueError names one of a class it does not know."""
    by_name = {name: class_id for class_id, name in class_names.items()}
    for name, _ in options.class_filters:
        if name not in by_name:
            raise ValueError(f"class_filters.{name}: {unknown_class(name, class_names)}")
    return {by_name[name]: own for name, own in options.class_filters}


def check_tracked_classes(class_names: dict[int, str], options: StreamOptions) -> None:
    """ValueError naming the first class the model (``class_names``) lacks among those the stream's tracking
    filters by: its ``classes``, its ignore zones' and its class filters', without which its tracker takes no
    frame. A zone's or a line's class the model lacks costs no frame (`check_classes` checks those apart)."""
    class_ids(class_names, options.classes)
    check_classes((), (), class_names, options.ignore_zones)
    class_filters_by_id(class_names, options)
