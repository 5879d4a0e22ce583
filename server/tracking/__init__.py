"""Tracking: one tracker per stream, fed only that stream's detections, in frame order.

`stream.StreamTracker` owns a stream's tracker (segcast's `segtrack.SegTracker` or one of
ultralytics') and makes the stream's tracks and their start and end events; `filters` says which of
the model's detections it takes; `duplicates` drops one object seen twice; `rate` measures how often
the stream is processed and tells an outage from a slower pace; `camera` measures a shaking
camera's step between frames, for segtrack; `segtrack_settings` holds segtrack's defaults.

Each is imported from its own module: importing the package imports none of them, so reading a config
file (which checks tracker settings against `segtrack_settings`) brings no tracker's dependencies.
"""
