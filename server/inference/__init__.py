"""Inference: the model (in-process or named and downloaded), the worker thread that owns it, and what it finds.

`worker` is the pipeline stage; `models`, `weights` and `export` resolve, fetch and convert the model;
`detections` and `outlines` turn its output into what trackers and viewers use.
"""
