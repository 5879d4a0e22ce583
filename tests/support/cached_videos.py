"""Generated test videos (and an exported model's folder) kept between runs: each made once per cache,
whatever the number of workers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cached_video(path: Path, write: Callable[[Path], object]) -> Path:
    """``path``, written by ``write`` if it is not there yet: into a partial file of this process's own,
    renamed into place, so two pytest workers that both find it missing (the cache is shared between
    them) never write into one file, nor rename away the other's (FileNotFoundError). The partial file
    keeps ``path``'s suffix, which may choose its format."""
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial{path.suffix}")
        write(partial)
        partial.replace(path)
    return path


def cached_folder(path: Path, write: Callable[[Path], object]) -> Path:
    """The folder ``path``, written by ``write`` if it is not there yet, as `cached_video` writes a file.

    A folder cannot replace another process's that is already in place (it is not empty): the later
    one, made alike, is removed, and the one in place is what both processes use.
    """
    if not path.exists():
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        write(partial)
        try:
            partial.rename(path)
        except OSError:
            if not path.is_dir():
                raise
            shutil.rmtree(partial)
    return path
