"""A stream's counts as the event outputs carry them: flat names, made and read in this one place.

The frame message nests its counts by kind and shape (``counts.zones.porch.objects``); MQTT's
counts topic, Home Assistant's sensors and the webhooks' counts want one level of names. The
names are the nested keys joined with ``_`` (``tracks``, ``zones_porch_objects``, ``lines_gate_in``),
so a new kind of count becomes new names with no change here, and what a name says (a total or a
count now, and what a person reads for it) is decided here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: A stream's counts, flat: ``tracks``, ``zones_porch_objects``, ``lines_gate_in``...
Counts = Mapping[str, float]
#: The count every stream has, whatever its zones and lines: known before its first frame, whose
#: shapes in pixels say which zone and line counts it has (a shape that does not fit is left out).
TRACKS = "tracks"

#: A zone's or line's counts are named after their kind first; what a person reads leaves it out,
#: as the rest of the name says it.
SHAPE_PREFIX = re.compile(r"^(zones|lines)_")
#: The kind whose counts are running totals: a line's crossings in and out.
TOTALS_PREFIX = "lines_"
#: How deep a shape's ``by_class`` breakdown sits in the frame message's ``counts``
#: (``zones.<zone>.by_class``): a zone or line may itself be named ``by_class``.
BREAKDOWN_DEPTH = 2


def counts_of(metadata: Mapping[str, object]) -> dict[str, float]:
    """A stream's counts now, flat: ``tracks`` and every number under the frame message's ``counts``.

    ``by_class`` breakdowns are left out: they would multiply the names by the model's classes.
    """
    tracks = metadata.get("tracks")
    counts: dict[str, float] = {TRACKS: len(tracks) if isinstance(tracks, list) else 0}
    _flatten(metadata.get("counts"), "", counts)
    return counts


def is_running_total(name: str) -> bool:
    """Whether count ``name`` is a total since its stream started rather than a count now.

    A line's ``in`` and ``out`` only grow while segcast runs, and start again at 0 when it restarts;
    occupancy and ``tracks`` go up and down. Home Assistant keeps statistics of the two differently
    (sums per hour or day of a total, means of a measurement), so its sensors say which they are.
    """
    return name.startswith(TOTALS_PREFIX)


def count_label(name: str) -> str:
    """What a person reads for count ``name``: ``tracks``, ``porch objects``, ``gate in``."""
    return SHAPE_PREFIX.sub("", name).replace("_", " ")


def _flatten(value: object, prefix: str, into: dict[str, float], depth: int = 0) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        if prefix:
            into[prefix] = value
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if key != "by_class" or depth != BREAKDOWN_DEPTH:
                _flatten(inner, f"{prefix}_{key}" if prefix else str(key), into, depth + 1)
