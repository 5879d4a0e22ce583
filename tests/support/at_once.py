"""Processes started together that meet at a barrier before racing on something shared, as pytest's
xdist workers do on its cache: a race a test wants to be certain of, not just likely.

Spawned, not forked: a fork of a pytest worker would carry its threads' held locks along.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from typing import Any

#: As many as pytest's workers sharing one cache.
WORKERS = 2
#: How long one waits at the barrier for the others: one that died on the way fails the rest, not hangs them.
BARRIER_TIMEOUT_S = 60.0


def run_at_once(target: Callable[..., None], *args: Any) -> list[BaseProcess]:
    """``target(barrier, *args)`` in `WORKERS` processes, each to wait at ``barrier`` right before the
    racing step; returns them once all have ended (killed, where the wait was cut short by an error)."""
    spawn = multiprocessing.get_context("spawn")
    start: Barrier = spawn.Barrier(WORKERS, timeout=BARRIER_TIMEOUT_S)
    workers = [spawn.Process(target=target, args=(start, *args)) for _ in range(WORKERS)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
    return workers
