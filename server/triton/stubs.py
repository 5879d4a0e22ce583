"""Watching the Python backend stubs of a tritonserver that `server.triton.cpu_server` runs.

Standard library only, as the launcher runs under the system's own Python.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


class StubWatch:
    """Tells when a Python backend stub under tritonserver has died on its own.

    tritonserver 2.51 neither restarts such a stub (one the OOM killer ended, one that crashed) nor
    reports it: its health and the model's readiness stay 200 while every request to the model fails,
    so only a restart of the whole server brings the model back. The stubs are its children; it
    reaps the ones it stops itself (a model unloaded or replaced, shutdown) at once, and never one
    that died on its own, so a stub found a zombie on two looks in a row died. Reads ``/proc`` only
    (Linux), so the launcher keeps to the standard library.
    """

    def __init__(self, server_pid: int, stub_name: str) -> None:
        self._server_pid = server_pid
        self._comm = stub_name[:15]  # the kernel keeps the first 15 characters of a command's name
        self._models: dict[int, str] = {}  # stub pid -> its model, read while it runs: a zombie has no command line
        self._zombies: set[int] = set()
        self.died()  # the first look notes the model of each stub

    def died(self) -> str | None:
        """Look once: a line naming the model whose stub died, or None."""
        stubs = dict(self._stubs())
        self._models = {pid: model for pid, model in self._models.items() if pid in stubs}
        for pid, state in stubs.items():
            if state != "Z" and pid not in self._models and (model := self._model_of(pid)) is not None:
                self._models[pid] = model
        zombies = {pid for pid, state in stubs.items() if state == "Z"}
        dead = min(zombies & self._zombies, default=None)
        self._zombies = zombies
        if dead is None:
            return None
        stub = f"the Python backend stub of model {self._models[dead]}" if dead in self._models else "a backend stub"
        return f"{stub} (pid {dead}) died, and tritonserver cannot start it again"

    def _stubs(self) -> Iterator[tuple[int, str]]:
        """tritonserver's stub processes: pid and state (a letter of ``ps``: Z for a zombie)."""
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # it has exited meanwhile
                continue
            comm, _, rest = stat.partition(" (")[2].rpartition(") ")  # the name may hold spaces and parentheses
            state, ppid = rest.split(maxsplit=2)[:2]
            if int(ppid) == self._server_pid and comm == self._comm:
                yield int(entry.name), state

    @staticmethod
    def _model_of(pid: int) -> str | None:
        """The model a stub runs: its first argument is ``<repository>/<model>/<version>/model.py``."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return Path(os.fsdecode(argv[1])).parent.parent.name if len(argv) > 1 and argv[1] else None
