"""A stream's counts as the event outputs carry them: flat names from the frame message's ``counts``."""

from __future__ import annotations

from server.events.counts import counts_of


def test_names_join_the_nested_keys_and_leave_the_class_breakdown_out() -> None:
    counts = {
        "zones": {"door": {"objects": 2, "by_class": {"person": 2}}},
        "lines": {"gate": {"in": 4, "out": 1, "by_class": {"person": {"in": 4, "out": 1}}}},
    }
    assert counts_of({"tracks": [{}, {}], "counts": counts}) == {
        "tracks": 2,
        "zones_door_objects": 2,
        "lines_gate_in": 4,
        "lines_gate_out": 1,
    }


def test_a_zone_or_line_named_by_class_is_counted_like_any_other() -> None:
    counts = {
        "zones": {"by_class": {"objects": 1, "by_class": {"car": 1}}},
        "lines": {"by_class": {"in": 3, "out": 0, "by_class": {"car": {"in": 3, "out": 0}}}},
    }
    assert counts_of({"tracks": [], "counts": counts}) == {
        "tracks": 0,
        "zones_by_class_objects": 1,
        "lines_by_class_in": 3,
        "lines_by_class_out": 0,
    }
