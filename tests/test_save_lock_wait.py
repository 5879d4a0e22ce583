"""A save of the config file while another process holds its lock: refused in time, never waited on for ever."""

from __future__ import annotations

import asyncio
import fcntl
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from server import file_saving
from server.config import StreamConfig
from tests.test_config_saving import STREAM_A, Start, write

#: A bound on a failure's cost: a save that waits for the lock for ever fails the test here, not at its timeout.
FINISH_TIMEOUT_S = 30.0


@contextmanager
def held_by_another_process(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` as another process's save would. ``flock`` locks belong to an open
    file description, so one opened here keeps the server's saves out just as another process's would."""
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


async def test_a_save_another_process_holds_the_lock_of_is_refused_naming_it_and_later_ones_are_not_queued(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segcast stopped or hung midway through a save of the file held its lock: each PATCH ?persist=1 went
    unanswered, the next queued behind it, until the lock was let go. Now each answers that its change is in
    effect and not saved, naming the lock and its holder; once the lock is let go, a save is made."""
    monkeypatch.setattr(file_saving, "SAVE_LOCK_TIMEOUT_S", 0.2)
    path = write(tmp_path, STREAM_A)
    lock = tmp_path / ".segcast.toml.lock"
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    errors = []
    with held_by_another_process(lock):
        for iou in (0.6, 0.4):
            async with asyncio.timeout(FINISH_TIMEOUT_S):
                response = await client.patch("/api/streams/a?persist=1", json={"iou": iou})
            assert response.status == 500, await response.text()
            body = await response.json()
            errors.append(body["error"])
            assert body["stream"]["options"]["iou"] == iou, "the change is in effect"
            assert path.read_text() == STREAM_A, "and not saved"
    assert errors[0] == errors[1], "the second save is answered as the first, not queued behind it"
    assert errors[0].startswith(
        "the change is in effect, but not saved (segcast.toml was not saved: it is locked by another process, "
        f"which has held {lock} for over 0.2 s"
    ), errors[0]
    async with asyncio.timeout(FINISH_TIMEOUT_S):
        response = await client.patch("/api/streams/a?persist=1", json={"iou": 0.5})
    assert response.status == 200, await response.text()
    assert tomllib.loads(path.read_text())["streams"][0]["iou"] == 0.5
    assert os.listdir(tmp_path) == ["segcast.toml"], "the lock file is removed by the save that took it"
