"""segtrack's default settings, apart from the tracker: reading a config file checks a stream's tracker
settings against them (`server.options.tracker_defaults`), and a command that only reads one
(``segcast split``) should not import the tracker's own dependencies (SciPy's assignment solver) for it.
"""

from __future__ import annotations

#: segtrack's settings, as ultralytics' yamls give theirs (``track_buffer`` in frames at 30 fps).
SEGTRACK_DEFAULTS: dict[str, float | int | bool | str] = {
    "tracker_type": "segtrack",
    "track_high_thresh": 0.25,  # detections at least this confident are matched first
    "track_low_thresh": 0.1,  # weaker ones only continue kept tracks; below this they are ignored
    "new_track_thresh": 0.25,  # a detection left over starts a track from this confidence
    "track_buffer": 150,  # how long a lost track can be found again, frames at 30 fps (5 s)
    # Least overlap (box and mask, averaged) of a motion match. Not called ``match_thresh``: ByteTrack's
    # is a largest cost (1 - IoU), so a value written for it would mean the opposite here.
    "min_overlap": 0.1,
    "mask_weight": 0.5,  # share of mask overlap in that average; 0: boxes only
    "appearance_thresh": 0.7,  # least colour similarity (Bhattacharyya) to re-identify a lost track
    "reid_distance": 3.0,  # how far a lost object may reappear, in object sizes plus its expected travel
    "camera_motion": False,  # follow the whole picture's steps between frames: a shaking or panning camera
}
