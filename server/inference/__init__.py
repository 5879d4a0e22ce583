"""Inference: the model (in-process or named and downloaded), the worker thread that owns it, and what it finds.

`worker` is the pipeline stage (its settings in `options`, a stream's state on it in `registration`,
which frames share a model call in `batching`, its analytics step in `analysis`, whether each stream
keeps up with its input in `pace`); `models`,
`weights` and `export` resolve, fetch and convert the model;
`detections` and `outlines` turn its output into what trackers and viewers use.
"""
