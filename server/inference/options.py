"""The inference thread's settings as a whole, and the defaults every stream starts from.

Apart from the thread (`server.inference.worker`), as the command line, the config file and the
saved settings (`server.cli`, `server.config`, `server.persist`) read and check them without
starting one. A stream's own settings are `server.options.StreamOptions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.options import StreamOptions

#: Matched whole (`re.fullmatch`): ``$`` would also pass a name with a newline after it (``"cpu\n"``).
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda|cuda:\d+|\d+")


@dataclass(frozen=True, slots=True)
class InferenceOptions:
    """Settings of the model thread as a whole, and the defaults every stream starts from.

    ``imgsz``, ``conf`` and ``iou`` are only defaults: a stream's own `StreamOptions` wins.
    ``half`` applies on GPUs only (CPUs run half precision slower, if at all). ``fast_masks`` makes
    a segmentation model's outlines from its mask prototypes inside each box (`server.inference.outlines`);
    off, ultralytics makes whole-input masks first, which gives the same outlines slower.
    """

    imgsz: int | None = None
    conf: float = 0.25
    iou: float = 0.7
    max_batch: int = 8
    device: str = "auto"  # `server.inference.models.resolve_device`: the GPU where PyTorch sees one
    half: bool = False
    fast_masks: bool = True

    def __post_init__(self) -> None:
        if not _DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"device: expected auto, cpu, mps or cuda:N, got {self.device!r}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch: expected at least 1, got {self.max_batch}")
        self.stream_defaults()  # the defaults must be valid stream options

    def stream_defaults(self) -> StreamOptions:
        return StreamOptions.from_mapping({"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou})

    @property
    def use_half(self) -> bool:
        """Half precision on a GPU only; ``auto`` is made a device on the inference thread first."""
        return self.half and self.device not in {"auto", "cpu", "mps"}
