"""A file system or name server that does not answer holds up only what waits for it, and a source URI
that can never work is refused by the API with 400.

A hard-mounted NFS or SMB share that stops answering blocks every ``stat()`` of a file on it for ever,
and a resolver that does not answer blocks the look-up of a camera's name. Neither may hold up the
changes of other streams: making a source reads only its URI (the file is looked at by its reader),
and the part of the API's policy check that waits for them runs in threads of its own, within a time
limit, answering 503 past it; the rest, read from the URI alone, is answered at once.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.http.access import source_checks
from server.http.keys import manager_key
from server.sources import SourceError, StreamState, open_source
from server.sources.file import FileSource
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]

#: How long a blocked call may take to come back once what held it up is released, or a change that
#: must not wait to be made: a bound on a failure's cost, never what a test waits for.
FINISH_TIMEOUT_S = 30.0


class HungShare:
    """Makes ``Path.stat`` of one path block until `release`, as on a hard-mounted share that stopped
    answering; every other path is looked at as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
        self.path = path
        self.entered = threading.Event()
        self.released = threading.Event()
        real_stat = Path.stat

        def stat(checked: Path, *, follow_symlinks: bool = True) -> Any:
            if checked == path:
                self.entered.set()
                self.released.wait(FINISH_TIMEOUT_S)
            return real_stat(checked, follow_symlinks=follow_symlinks)

        monkeypatch.setattr(Path, "stat", stat)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, FINISH_TIMEOUT_S), "nothing looked at the file"

    def release(self) -> None:
        self.released.set()


class HungCheck:
    """Makes ``Path.stat`` of anything under ``share`` block until `release`, as on a hard-mounted share
    that stopped answering: the API's policy check of a file there (its real path) waits for it, as
    does anything that would resolve ``share`` itself. Every other path is looked at as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, share: Path) -> None:
        self.released = threading.Event()
        self.waiting = 0  # looks blocked now (counted in their threads)
        self._lock = threading.Lock()
        real_stat = Path.stat

        def stat(checked: Path, *, follow_symlinks: bool = True) -> Any:
            if checked.is_relative_to(share):
                with self._lock:
                    self.waiting += 1
                self.released.wait(FINISH_TIMEOUT_S)
                with self._lock:
                    self.waiting -= 1
            return real_stat(checked, follow_symlinks=follow_symlinks)

        monkeypatch.setattr(Path, "stat", stat)

    async def wait_stuck(self, count: int) -> None:
        async def stuck() -> bool:
            return self.waiting == count

        await eventually(stuck, what=f"{count} checks stuck")

    def release(self) -> None:
        self.released.set()


async def state_of(client: TestClient, stream_id: str, state: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
        return body if body["state"] == state else None

    return await eventually(reached, what=f"{stream_id} to be {state}")


async def promptly(request: Awaitable[ClientResponse]) -> ClientResponse:
    """The response to ``request``, which must not wait for what is hung."""
    try:
        return await asyncio.wait_for(request, FINISH_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError("the request waited for the hung file system") from None


# -- making a source -----------------------------------------------------------------------------


@pytest.fixture
def no_file_system(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any look at the metadata of a file under ``/share``: the share would not answer."""
    real_stat = Path.stat

    def stat(path: Path, *, follow_symlinks: bool = True) -> Any:
        if path.is_relative_to("/share"):
            raise AssertionError(f"{path} was looked at")
        return real_stat(path, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(Path, "stat", stat)
    yield


def test_making_a_file_source_looks_at_no_file(no_file_system: None) -> None:
    """Whether the file was there (and whether a plain path with '#' named a whole file) was read here,
    under the lock every stream change takes."""
    for uri in ("/share/cam.mp4", "file:///share/cam.mp4", "/share/cam.mp4#rate=max", "/share/take#2.mp4"):
        source = open_source(uri)
        assert isinstance(source, FileSource)


def test_a_plain_paths_last_hash_starts_options_only_where_a_files_options_follow(no_file_system: None) -> None:
    cases = {
        "/share/cam.mp4#rate=max": ("/share/cam.mp4", True),
        "/share/cam.mp4#": ("/share/cam.mp4", False),
        "/share/clip #1.mp4#rate=max": ("/share/clip #1.mp4", True),
        "/share/take#2.mp4": ("/share/take#2.mp4", False),
        "/share/a #1 b.mp4": ("/share/a #1 b.mp4", False),
        "/share/a#b=c.mp4": ("/share/a#b=c.mp4", False),
        "/share/set#rate=max/clip.mp4": ("/share/set#rate=max/clip.mp4", False),
        "file:///share/a%23rate=max.mp4": ("/share/a#rate=max.mp4", False),
        "file:///share/a%23rate=max.mp4#rate=max": ("/share/a#rate=max.mp4", True),
    }
    for uri, (path, batch) in cases.items():
        source = open_source(uri)
        assert isinstance(source, FileSource)
        assert (str(source.path), source.batch) == (path, batch), uri
    for uri, named in (
        ("/share/cam.mp4#rate=max&loop", "unknown option 'loop'"),
        ("/share/cam.mp4#rate", "rate=''"),
        ("/share/cam.mp4#rate=bogus", "rate='bogus'"),
        ("/share/take#rate=max.mp4", "rate='max.mp4'.*file:// URL, '#' as %23"),
    ):
        with pytest.raises(SourceError, match=named):
            open_source(uri)


def test_a_missing_file_is_named_by_its_reader(tmp_path: Path) -> None:
    source = open_source(str(tmp_path / "gone.mp4"))
    with pytest.raises(SourceError, match=rf"^no such file: {tmp_path}/gone\.mp4$"):
        next(source.open(threading.Event()))


# -- the manager ---------------------------------------------------------------------------------


async def test_a_file_whose_share_does_not_answer_holds_up_no_other_change(
    start_server: Start, tmp_path: Path, scene_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its ``stat()`` ran under the lock every change takes: one file on a hung share (from the config
    file, --source, or the API before the share hung) held up every add, change and removal for good."""
    hung = tmp_path / "hung.mp4"
    await asyncio.to_thread(shutil.copyfile, scene_video, hung)
    share = HungShare(monkeypatch, hung)
    client = await start_server(StreamConfig("other", "scene:?seed=2"))
    assert client.app is not None
    manager = client.app[manager_key]
    adding = asyncio.create_task(asyncio.to_thread(manager.add, StreamConfig("hung", str(hung))))
    try:
        await share.wait_entered()
        # given the file's share not answering, when other streams change, then they do
        added = await promptly(client.post("/api/streams", json={"id": "new", "uri": "scene:?seed=3"}))
        assert added.status == 201, await added.text()
        changed = await promptly(client.patch("/api/streams/other", json={"uri": "scene:?seed=4"}))
        assert changed.status == 200, await changed.text()
        assert (await promptly(client.delete("/api/streams/new"))).status == 204
        info = await asyncio.wait_for(adding, FINISH_TIMEOUT_S)
        assert (info.state, info.error) == (StreamState.STARTING, None), "it waits for its share, as its own"
    finally:
        share.release()
    await state_of(client, "hung", "live")
    await state_of(client, "other", "live")


# -- the API's policy check ----------------------------------------------------------------------


async def test_a_policy_check_that_does_not_return_is_a_503_and_other_changes_go_on(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check ran in the 16 stream-change threads with no time limit: the request waited for ever,
    and 16 of them left every stream change through the API waiting too."""
    uri = str(tmp_path / "share" / "cam.mp4")
    hung = HungCheck(monkeypatch, tmp_path / "share")
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), media_dirs=(tmp_path,))
    default_timeout_s = source_checks.CHECK_TIMEOUT_S
    monkeypatch.setattr(source_checks, "CHECK_TIMEOUT_S", 0.2)  # given up at once: the check never returns
    try:
        refused = await promptly(client.post("/api/streams", json={"id": "hung", "uri": uri}))
        assert refused.status == 503, await refused.text()
        assert refused.headers["Retry-After"].isdigit()
        message = (await refused.json())["error"]
        assert message.startswith("body.uri: ") and "did not answer within 0.2 s" in message, message
        changed = await promptly(client.patch("/api/streams/cam", json={"uri": uri}))
        assert changed.status == 503, await changed.text()
        await hung.wait_stuck(2)

        # given two checks stuck, when streams change through the API, then they do
        monkeypatch.setattr(source_checks, "CHECK_TIMEOUT_S", default_timeout_s)
        added = await promptly(client.post("/api/streams", json={"id": "new", "uri": "scene:?seed=3"}))
        assert added.status == 201, await added.text()
        moved = await promptly(client.patch("/api/streams/cam", json={"uri": "scene:?seed=4"}))
        assert moved.status == 200, await moved.text()
        assert (await promptly(client.patch("/api/streams/cam", json={"conf": 0.4}))).status == 200
        assert (await promptly(client.delete("/api/streams/new"))).status == 204
        assert hung.waiting == 2, "all of that while both checks were stuck"
    finally:
        hung.release()
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert [(s["id"], s["source"]) for s in streams] == [("cam", "scene:?seed=4")], "the refused changes made none"


async def test_checks_stuck_in_every_thread_make_the_next_a_503_at_once_not_a_wait(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bounded number of stuck threads: the next check that needs one neither queues behind them nor
    takes a new one, and is not a warning each time (a client retrying would fill the log)."""
    uri = str(tmp_path / "share" / "cam.mp4")
    hung = HungCheck(monkeypatch, tmp_path / "share")
    client = await start_server(media_dirs=(tmp_path,))
    threads = source_checks.CHECK_THREADS
    monkeypatch.setattr(source_checks, "CHECK_TIMEOUT_S", 0.2)
    try:
        posts = (client.post("/api/streams", json={"id": f"hung{n}", "uri": uri}) for n in range(threads))
        refused = await asyncio.gather(*map(promptly, posts))
        assert [r.status for r in refused] == [503] * threads
        await hung.wait_stuck(threads)
        # given every check thread stuck, when another check that needs one comes, then it is refused without waiting
        monkeypatch.setattr(source_checks, "CHECK_TIMEOUT_S", 3600.0)
        caplog.clear()
        for n in range(3):
            busy = await promptly(client.post("/api/streams", json={"id": f"more{n}", "uri": uri}))
            assert busy.status == 503, await busy.text()
            message = (await busy.json())["error"]
            assert message.startswith("body.uri: ") and "still waiting for the file system or the name" in message
            assert busy.headers["Retry-After"].isdigit()
        assert hung.waiting == threads, "no thread was added for them"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    finally:
        hung.release()

    async def added_once_free() -> bool:
        response = await client.post("/api/streams", json={"id": "file", "uri": uri})
        assert response.status in (201, 503), await response.text()
        return response.status == 201

    await eventually(added_once_free, what="a check once the stuck ones returned")


async def test_sources_that_need_neither_a_file_nor_a_name_are_checked_while_a_share_hangs(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each check made the policy anew, which resolved ``media_dirs`` on the hung share: a scene, a camera
    given by its address and a webcam each waited for it like a file, and once four were stuck every
    source added through the API was a 503 at once."""
    share = tmp_path / "share"
    share.mkdir()
    client = await start_server(media_dirs=(share,), allow_devices=False)
    hung = HungCheck(monkeypatch, share)  # the share stops answering once the server is up
    threads = source_checks.CHECK_THREADS
    waiting = [
        asyncio.create_task(client.post("/api/streams", json={"id": f"file{n}", "uri": str(share / f"c{n}.mp4")}))
        for n in range(threads)
    ]
    try:
        await hung.wait_stuck(threads)
        # given every check thread waiting for the share, when sources come that need neither it nor a
        # name server, then they are answered as ever
        answers = {}
        for n, uri in enumerate(
            ["scene:?seed=1", "rtsp://127.0.0.1:9/x", "rtsp://169.254.169.254/x", "webcam:0", "videos/c.mp4"]
        ):
            response = await promptly(client.post("/api/streams", json={"id": f"s{n}", "uri": uri}))
            answers[uri] = response.status
        assert answers == {
            "scene:?seed=1": 201,
            "rtsp://127.0.0.1:9/x": 201,
            "rtsp://169.254.169.254/x": 403,
            "webcam:0": 403,
            "videos/c.mp4": 403,
        }
        named = await promptly(client.post("/api/streams", json={"id": "named", "uri": "rtsp://cam.invalid/x"}))
        assert named.status == 503, "a camera's name is looked up in a check thread, and none is free"
    finally:
        hung.release()
        await asyncio.gather(*waiting)


class GatedPolicy:
    """A policy whose every check waits in its thread until `open`, as a look-up at a slow name server does."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = 0
        self._lock = threading.Lock()

    def check_text(self, uri: str) -> Callable[[], None]:
        return self._look_up

    def _look_up(self) -> None:
        with self._lock:
            self.started += 1
        self.gate.wait(FINISH_TIMEOUT_S)

    async def wait_started(self, count: int) -> None:
        async def started() -> bool:
            return self.started == count

        await eventually(started, what=f"{count} look-ups started")


async def test_more_ordinary_checks_at_once_than_threads_wait_for_one_and_all_pass() -> None:
    """Every check in a thread was counted as one that might be stuck: of six ordinary checks asked at
    once, the fifth and sixth were refused at once (503), nothing being stuck at all."""
    policy = GatedPolicy()
    checks = source_checks.SourceChecks(policy, threads=4)  # type: ignore[arg-type]
    try:
        asked = [asyncio.create_task(checks.check(f"rtsp://cam{n}.example/live")) for n in range(6)]
        await policy.wait_started(4)
        assert not [task for task in asked if task.done()], "refused while the first four were being answered"
        policy.gate.set()
        await asyncio.wait_for(asyncio.gather(*asked), FINISH_TIMEOUT_S)
        assert policy.started == 6
    finally:
        policy.gate.set()
        checks.shutdown()


async def test_checks_given_up_in_every_thread_refuse_the_next_at_once_until_one_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = GatedPolicy()
    checks = source_checks.SourceChecks(policy, threads=2)  # type: ignore[arg-type]
    monkeypatch.setattr(source_checks, "CHECK_TIMEOUT_S", 0.2)
    try:
        for n in range(2):
            with pytest.raises(source_checks.CheckUnanswered, match=r"did not answer within 0\.2 s"):
                await checks.check(f"rtsp://stuck{n}.example/live")
        monkeypatch.setattr(source_checks, "CHECK_TIMEOUT_S", 3600.0)
        with pytest.raises(source_checks.CheckUnanswered, match="2 earlier checks are still waiting"):
            await promptly_done(checks.check("rtsp://next.example/live"))
        assert policy.started == 2, "no look-up was queued behind the stuck ones"
        policy.gate.set()

        async def checked() -> bool:
            try:
                await promptly_done(checks.check("rtsp://later.example/live"))
            except source_checks.CheckUnanswered:
                return False
            return True

        await eventually(checked, what="a check once the stuck ones returned")
    finally:
        policy.gate.set()
        checks.shutdown()


async def promptly_done(check: Awaitable[None]) -> None:
    """``check``, which must not wait for what is stuck."""
    try:
        await asyncio.wait_for(check, FINISH_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError("the check waited for the stuck ones") from None


async def test_shutdown_does_not_wait_for_a_stuck_check(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "share" / "cam.mp4")
    hung = HungCheck(monkeypatch, tmp_path / "share")
    client = await start_server(media_dirs=(tmp_path,))
    monkeypatch.setattr(source_checks, "CHECK_TIMEOUT_S", 0.2)
    try:
        assert (await promptly(client.post("/api/streams", json={"id": "hung", "uri": uri}))).status == 503
        await hung.wait_stuck(1)
        await asyncio.wait_for(client.close(), FINISH_TIMEOUT_S)
        assert hung.waiting == 1, "closed while the check was still stuck"
    finally:
        hung.release()


# -- URIs that can never work --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "named"),
    [
        ("file://{media}/a.mp4#rate=bogus", "rate='bogus'"),
        ("{media}/a.mp4#rate=max&foo=1", "unknown option 'foo'"),
        ("file://{media}/a%00.mp4", "cannot hold a NUL character"),
        ("rtsp://admin:s3cret@127.0.0.1:8554/x#timeout=abc", "timeout='abc'"),
        ("rtsp://127.0.0.1/x#transport=pigeon", "transport='pigeon'"),
        ("scene:?width=99999", "width=99999"),
    ],
)
async def test_a_uri_that_can_never_work_is_a_bad_request_naming_the_problem(
    start_server: Start, tmp_path: Path, uri: str, named: str
) -> None:
    """It was accepted (201) as a stream that failed at once, and a PATCH stopped the running stream
    for it."""
    uri = uri.format(media=tmp_path)
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), media_dirs=(tmp_path,))
    added = await client.post("/api/streams", json={"id": "bad", "uri": uri})
    assert added.status == 400, await added.text()
    message = (await added.json())["error"]
    assert message.startswith("body.uri: ") and named in message
    assert "s3cret" not in message
    changed = await client.patch("/api/streams/cam", json={"uri": uri})
    assert changed.status == 400, await changed.text()
    assert named in (await changed.json())["error"]
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert [(s["id"], s["source"]) for s in streams] == [("cam", "scene:?seed=1")]
    await state_of(client, "cam", "live")
