"""Generated test videos kept between runs: each made once per cache, whatever the number of workers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def cached_video(path: Path, write: Callable[[Path], object]) -> Path:
    """``path``, written by ``write`` if it is not there yet: into a partial file of this process's own,
    renamed into place, so two pytest workers that both find it missing (the cache is shared between
    them) never write into one file, nor rename away the other's (FileNotFoundError)."""
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial.mp4")
        write(partial)
        partial.replace(path)
    return path
