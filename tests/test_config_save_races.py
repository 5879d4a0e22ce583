"""Saves of one config file racing other writers: other segcasts saving it, hand edits, saves killed midway."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

import server.persist as persist
from server.config import StreamConfig, load_config
from server.options import StreamOptions
from server.persist import ConfigEditedError, ConfigFileState, write_config
from tests.test_config_saving import FINISH_TIMEOUT_S, STREAM_A, Start, offered, write

#: What another writer adds to the file: a stream that must not be lost.
HAND_STREAM = '\n[[streams]]\nid = "hand"\nuri = "scene:?seed=9"\n'
#: Where the saving processes start, to import segcast from this checkout.
REPO = Path(__file__).resolve().parents[1]
#: How many times two processes save at once: without a lock between them, both said "saved" in most rounds.
PROCESS_ROUNDS = 12


def stream_ids(path: Path) -> list[str]:
    return [stream["id"] for stream in tomllib.loads(path.read_text())["streams"]]


def save_a_as(path: Path, uri: str) -> None:
    """Save stream ``a`` of the file at ``path`` with ``uri``, as a segcast that read the file now would."""
    settings = load_config(path)
    state = ConfigFileState.of(settings)
    write_config(settings, state.with_stream("a", replace(settings.streams[0], uri=uri)), state)


@contextmanager
def holding_the_save_lock(path: Path) -> Iterator[None]:
    """Hold the lock every segcast saving ``path`` takes, as another segcast's save does: ``flock`` on
    ``.<name>.lock`` beside it, removed before it is let go."""
    lock = path.with_name(f".{path.name}.lock")
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
        lock.unlink()
    finally:
        os.close(descriptor)


def test_another_segcasts_save_cannot_land_between_a_saves_check_and_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save read the file, found it as segcast left it, and renamed its own over it: another segcast's save
    between the two was overwritten, both answering "saved". Now the save holds the lock until its rename,
    and another segcast's save in that window is kept out (it waits, then finds the file changed)."""
    path = write(tmp_path, STREAM_A)
    kept_out: list[bool] = []
    write_whole = persist.write_whole

    def another_save_first(target: Path, *args: object) -> None:
        descriptor = os.open(target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            kept_out.append(True)
        else:
            kept_out.append(False)
            target.write_text(target.read_text() + HAND_STREAM)
        finally:
            os.close(descriptor)
        write_whole(target, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(persist, "write_whole", another_save_first)
    save_a_as(path, "scene:?seed=100")
    assert kept_out == [True], "another segcast's save changed the file after this save checked it"
    assert load_config(path).streams[0].uri == "scene:?seed=100"
    assert os.listdir(tmp_path) == ["segcast.toml"], "no lock file is left beside the config file"


def test_a_save_waits_for_another_segcasts_save_and_then_refuses_to_undo_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save asked while another segcast holds the lock starts only once it is let go, and then finds the
    file that one wrote: it is refused (`ConfigEditedError`), and the other's change stays."""
    path = write(tmp_path, STREAM_A)
    settings = load_config(path)
    state = ConfigFileState.of(settings)
    changed = state.with_stream("a", replace(settings.streams[0], uri="scene:?seed=100"))
    waiting = threading.Event()
    flock, test_thread = fcntl.flock, threading.get_ident()

    def flock_seen(descriptor: int, operation: int) -> None:
        if threading.get_ident() != test_thread and operation & fcntl.LOCK_EX:
            waiting.set()
        flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", flock_seen)
    with ThreadPoolExecutor(1) as executor, holding_the_save_lock(path):
        save = executor.submit(write_config, settings, changed, state)
        save.add_done_callback(lambda _: waiting.set())
        assert waiting.wait(FINISH_TIMEOUT_S)
        assert not save.done(), "the save went on while another segcast's save held the lock"
        path.write_text(path.read_text() + HAND_STREAM)
    with pytest.raises(ConfigEditedError, match="saved by another program"):
        save.result(FINISH_TIMEOUT_S)
    assert stream_ids(path) == ["a", "hand"]
    assert load_config(path).streams[0].uri == "scene:"


#: A segcast process's saves, for the test: on "read", it reads the config file at argv[1]; on "save", it saves
#: its stream ``a`` with the uri argv[2] and says what became of the save.
SAVER = """
import sys
from dataclasses import replace
from pathlib import Path

from server.config import load_config
from server.persist import ConfigEditedError, ConfigFileState, write_config

path, uri = Path(sys.argv[1]), sys.argv[2]
for line in sys.stdin:
    if line == "read\\n":
        settings = load_config(path)
        state = ConfigFileState.of(settings)
        print("read", flush=True)
        continue
    try:
        write_config(settings, state.with_stream("a", replace(settings.streams[0], uri=uri)), state)
    except ConfigEditedError:
        print("refused", flush=True)
    else:
        print(uri, flush=True)
"""


def told(saver: subprocess.Popen[str], what: str) -> str:
    """Tell ``saver`` ``what`` to do; its answer."""
    assert saver.stdin is not None and saver.stdout is not None
    saver.stdin.write(f"{what}\n")
    saver.stdin.flush()
    return saver.stdout.readline().strip()


def test_of_two_processes_saving_one_file_at_once_one_is_refused_and_the_file_holds_the_others(
    tmp_path: Path,
) -> None:
    """Two segcasts on one file, each saving a change of the file as both read it: both answered "saved",
    and the file held one of the two changes."""
    path = write(tmp_path, STREAM_A)
    uris = ("scene:?seed=100", "scene:?seed=200")
    savers = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), uri],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for uri in uris
    ]
    try:
        outcomes = []
        for _ in range(PROCESS_ROUNDS):
            path.write_text(STREAM_A)
            assert [told(saver, "read") for saver in savers] == ["read", "read"]
            for saver in savers:  # both at once, as near as can be: each then waits for the other's lock
                assert saver.stdin is not None
                saver.stdin.write("save\n")
                saver.stdin.flush()
            answers = sorted(saver.stdout.readline().strip() for saver in savers if saver.stdout is not None)
            outcomes.append((answers, load_config(path).streams[0].uri))
    finally:
        for saver in savers:
            saver.kill()
            saver.communicate()
    assert all(answers == ["refused", uri] for answers, uri in outcomes), outcomes


def test_a_save_removes_the_partial_files_of_a_killed_save_and_not_a_save_under_way(tmp_path: Path) -> None:
    """A save killed before its rename (kill -9) left ``.<name>.<random>.partial``, a copy of the config that may
    hold access tokens, for ever. The next save removes those older than a minute; a younger one may be
    another process's save under way, and anything not named as a save names its partial files is not segcast's."""
    path = write(tmp_path, STREAM_A)
    killed = [tmp_path / ".segcast.toml.abcd_123.partial", tmp_path / ".segcast.toml.bak.wxyz0987.partial"]
    kept = [tmp_path / ".segcast.toml.efgh4567.partial", tmp_path / ".segcast.toml.someone.partial"]
    an_hour_ago = time.time() - 3600
    for partial in killed + kept:
        partial.write_text('[auth]\nadmin_tokens = ["secret"]\n')
    for partial in [*killed, kept[1]]:
        os.utime(partial, (an_hour_ago, an_hour_ago))
    save_a_as(path, "scene:?seed=100")
    assert sorted(os.listdir(tmp_path)) == sorted(["segcast.toml", *(partial.name for partial in kept)])


def test_a_file_does_not_count_as_edited_while_segcasts_own_save_is_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look at the file (for ``persistable``) between a save's rename and its end finds the save's bytes:
    those are segcast's own, not an edit, and must not refuse the next ``?persist=1``."""
    path = write(tmp_path, STREAM_A)
    settings = load_config(path)
    state = ConfigFileState.of(settings)
    found: list[str | None] = []
    write_whole = persist.write_whole

    def looked_at_after(target: Path, *args: object) -> None:
        write_whole(target, *args)  # type: ignore[arg-type]
        found.append(state.edited(path))

    monkeypatch.setattr(persist, "write_whole", looked_at_after)
    write_config(settings, state.with_stream("a", replace(settings.streams[0], uri="scene:?seed=100")), state)
    assert found == [None]
    assert state.edited(path) is None
    path.write_text(path.read_text() + HAND_STREAM)
    assert (state.edited(path) or "").startswith("segcast.toml was edited, or saved by another program,")


async def test_persist_1_on_a_file_edited_since_segcast_read_it_changes_nothing_and_is_not_offered(
    start_server: Start, tmp_path: Path
) -> None:
    """After a hand edit, ``?persist=1`` made the change and answered 409 "in effect, but not saved", and the
    stream stayed ``persistable``: the viewer kept offering a save that could only fail."""
    path = write(tmp_path, STREAM_A)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    assert await offered(client) == (True, True)
    edited = STREAM_A + HAND_STREAM
    path.write_text(edited)
    response = await client.patch("/api/streams/a?persist=1", json={"iou": 0.6})
    assert response.status == 409, await response.text()
    assert (await response.json())["error"].startswith(
        "nothing was changed: ?persist=1 asked to save the change, and segcast.toml was edited, or saved by "
        "another program, since this segcast read or last saved it, and a save would undo that: restart segcast"
    )
    assert await offered(client) == (False, False)
    assert (await (await client.get("/api/streams/a")).json())["options"]["iou"] == StreamOptions().iou
    assert path.read_text() == edited
    unsaved = await client.patch("/api/streams/a?persist=0", json={"iou": 0.6})
    assert unsaved.status == 200, await unsaved.text()
