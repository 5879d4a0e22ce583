"""Zones and lines on a stream, and what tracks do with them: enter, dwell, loiter, cross.

`shapes` turns untrusted option values into checked `Zone` and `Line` values; `engine` keeps one
stream's per-track state on the inference thread, right after the tracker, and turns each frame's
tracks into analytics events and counts, by the rules whose geometry `zone_membership` and
`line_crossing` hold; `events` holds the values that leave it. Membership uses
the track's mask (the share of its area inside a zone), falling back to the box for detection-only
models, because a box centre says an object is in a bay it only half covers.
"""
