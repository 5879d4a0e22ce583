"""Saving API changes to the config file when it goes wrong, and tracker settings a save could write."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import threading
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from ultralytics.trackers.utils.gmc import GMC

from server.app import create_app
from server.cli import build_parser, settings_from_args
from server.config import Settings, StreamConfig, load_config
from server.config_values import ConfigError
from server.http import saving
from server.http.saving import SaveRefusal
from server.inference.models import BUNDLED_MODEL
from server.options import StreamOptions
from server.persist import ConfigEditedError, ConfigFileState, config_file_unwritable, write_config
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
GMC_CHOICES = ("sparseOptFlow", "orb", "sift", "ecc", "none")
#: How long a look held up by a test may wait to be let go: a bound on a failure's cost.
FINISH_TIMEOUT_S = 30.0


def write(folder: Path, text: str) -> Path:
    path = folder / "segcast.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("method", GMC_CHOICES)
def test_every_gmc_method_taken_is_one_ultralytics_builds(method: str) -> None:
    options = StreamOptions.from_mapping({"tracker": "botsort", "tracker_settings": {"gmc_method": method}})
    GMC(method=str(options.tracker_config()["gmc_method"]))


@pytest.mark.parametrize("method", ["Sparse", "sparseoptflow", "ORB", ""])
def test_a_gmc_method_ultralytics_refuses_stops_the_start_naming_the_choices(tmp_path: Path, method: str) -> None:
    """Taken, it left the stream live while every frame failed with "Unknown GMC method"."""
    with pytest.raises(ValueError, match="Unknown GMC method"):
        GMC(method=method)
    path = write(tmp_path, f'[[streams]]\nid = "a"\nuri = "scene:"\ntracker = "botsort"\n'
                 f'tracker_settings = {{ gmc_method = "{method}" }}\n')  # fmt: skip
    choices = ", ".join(GMC_CHOICES)
    with pytest.raises(
        ConfigError, match=rf"^segcast\.toml: streams\[0\] \(id 'a'\)\.tracker_settings\.gmc_method: .*{choices}"
    ):
        load_config(path)


async def test_a_gmc_method_ultralytics_refuses_is_a_400_and_never_saved(start_server: Start, tmp_path: Path) -> None:
    path = write(tmp_path, '[[streams]]\nid = "a"\nuri = "scene:"\n')
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    body = {"tracker": "botsort", "tracker_settings": {"gmc_method": "Sparse"}}
    response = await client.patch("/api/streams/a?persist=1", json=body)
    assert response.status == 400, await response.text()
    assert "gmc_method" in (error := (await response.json())["error"]) and "sparseOptFlow" in error
    assert (await (await client.get("/api/streams/a")).json())["options"]["tracker"] == "segtrack"
    assert "gmc_method" not in path.read_text()


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_save_that_fails_on_a_full_disk_leaves_the_file_and_no_partial_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    text = '[[streams]]\nid = "a"\nuri = "scene:"\n'
    path = write(tmp_path, text)

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "fsync":
        monkeypatch.setattr(os, "fsync", full)
    else:
        monkeypatch.setattr(Path, "replace", full)
    with pytest.raises(OSError, match="No space left on device"):
        write_config(load_config(path), [StreamConfig("b", "scene:?seed=2")])
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segcast.toml"], "no .segcast.toml.partial is left"


async def test_a_save_that_fails_on_a_full_disk_names_the_config_file(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write or fsync has no file name: the reason read "No space left on device: None"."""
    path = write(tmp_path, '[[streams]]\nid = "a"\nuri = "scene:"\n')
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    real_fsync = os.fsync

    def full(descriptor: int) -> None:
        if os.readlink(f"/proc/self/fd/{descriptor}").endswith(".partial"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", full)
    response = await client.patch("/api/streams/a?persist=1", json={"iou": 0.6})
    assert response.status == 500, await response.text()
    assert (await response.json())["error"] == (
        f"the change is in effect, but not saved (No space left on device: {path})"
    )
    assert os.listdir(tmp_path) == ["segcast.toml"]


async def test_persist_0_is_not_saved_under_save_config(start_server: Start, tmp_path: Path) -> None:
    text = '[server]\nsave_config = true\n\n[[streams]]\nid = "a"\nuri = "scene:"\n'
    path = write(tmp_path, text)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path, save_config=True)
    for flag in ("0", "false"):
        assert (await client.patch(f"/api/streams/a?persist={flag}", json={"iou": 0.6})).status == 200
        assert path.read_text() == text, f"?persist={flag} asked not to save"
    assert (await client.patch("/api/streams/a", json={"iou": 0.5})).status == 200
    assert tomllib.loads(path.read_text())["streams"][0]["iou"] == 0.5, "save_config saves the others"
    response = await client.patch("/api/streams/a?persist=yes", json={"iou": 0.4})
    assert response.status == 400
    assert (await response.json())["error"] == "persist: expected 1, 0, true or false, got 'yes'"


async def test_an_empty_or_repeated_persist_is_refused_and_nothing_is_changed(
    start_server: Start, tmp_path: Path
) -> None:
    """Read as not given, or as its first value, they saved or left unsaved a change the client may not have meant."""
    text = '[[streams]]\nid = "a"\nuri = "scene:"\n'
    path = write(tmp_path, text)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    for query, message in [
        ("persist=", "persist: expected 1, 0, true or false, got ''"),
        ("persist=0&persist=1", "persist: given more than once; give each parameter once"),
    ]:
        for response in (
            await client.patch(f"/api/streams/a?{query}", json={"iou": 0.6}),
            await client.post(f"/api/streams?{query}", json={"id": "b", "uri": "scene:"}),
            await client.delete(f"/api/streams/a?{query}"),
        ):
            assert response.status == 400, (query, await response.text())
            assert (await response.json())["error"] == message
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert [(s["id"], s["options"]["iou"]) for s in streams] == [("a", 0.7)], "nothing was changed"
    assert path.read_text() == text


def test_a_file_that_only_loads_with_its_flags_is_not_saved_with_their_values(tmp_path: Path) -> None:
    """match_thresh is not segtrack's, the file's tracker: the file loads only under --tracker
    bytetrack, and a save wrote [stream_defaults] conf = 0.5 and tracker = "bytetrack" into it."""
    text = '[[streams]]\nid = "door"\nuri = "scene:"\ntracker_settings = { match_thresh = 0.7 }\n'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="match_thresh: not a setting of segtrack"):
        load_config(path)
    argv = ["serve", "--config", str(path), "--tracker", "bytetrack", "--conf", "0.5"]
    running = settings_from_args(build_parser().parse_args(argv))
    [door] = running.streams
    changed = replace(door, options=StreamOptions.from_mapping({"iou": 0.6}, door.options))
    with pytest.raises(ConfigError, match=r"^segcast\.toml does not load without the flags segcast started with"):
        write_config(running, [changed])
    assert path.read_text() == text


def test_a_save_over_a_file_removed_since_says_it_may_be_gone(tmp_path: Path) -> None:
    path = write(tmp_path, '[[streams]]\nid = "a"\nuri = "scene:"\n')
    settings = load_config(path)
    state = ConfigFileState.of(settings)
    path.unlink()
    with pytest.raises(ConfigEditedError, match=r"^segcast\.toml was removed or moved away since this segcast read"):
        write_config(settings, [StreamConfig("b", "scene:?seed=2")], state)
    assert not path.exists(), "a file removed is not put back"


COMMENTED = """\
# cams.toml: the cameras of the front yard
# (kept: the comments at the top of the file)

[server]
port = 8081  # the port our proxy expects

# the gate camera
[[streams]]
id = "a"
uri = "scene:"
"""

STREAM_A = '[[streams]]\nid = "a"\nuri = "scene:"\n'
#: The uid and gid of no one in particular: a file's owner other than the test's (root).
OTHER_UID, OTHER_GID = 4321, 4322
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")


def save_b(path: Path, state: ConfigFileState | None = None) -> None:
    """Save the file at ``path`` with stream ``b`` in place of its streams."""
    write_config(load_config(path), [StreamConfig("b", "scene:?seed=2")], state)


def refuse_chown(*args: object) -> None:
    """What os.fchown does for a process that is not root, giving a file away."""
    raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))


@as_root
def test_a_save_keeps_the_files_owner_group_and_permissions(tmp_path: Path) -> None:
    """Saved by segcast running as root, a file of uid 1000 with mode 640 became root's: its owner could
    not read it. The .bak that keeps its comments is its owner's too."""
    path = write(tmp_path, COMMENTED)
    os.chown(path, OTHER_UID, OTHER_GID)
    path.chmod(0o640)
    save_b(path)
    for kept in (path, tmp_path / "segcast.toml.bak"):
        saved = kept.stat()
        assert (saved.st_uid, saved.st_gid, stat.S_IMODE(saved.st_mode)) == (OTHER_UID, OTHER_GID, 0o640), kept
    assert [stream.stream_id for stream in load_config(path).streams] == ["b"]


@as_root
def test_a_file_of_another_user_that_segcast_may_not_give_back_is_not_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root, segcast cannot give the new file to the old one's owner: saved, it would take it from them."""
    path = write(tmp_path, STREAM_A)
    os.chown(path, OTHER_UID, OTHER_GID)
    monkeypatch.setattr(os, "fchown", refuse_chown)
    with pytest.raises(ConfigError, match=rf"^segcast\.toml was not saved: it belongs to uid {OTHER_UID}, "):
        save_b(path)
    assert path.read_text() == STREAM_A and path.stat().st_uid == OTHER_UID
    assert os.listdir(tmp_path) == ["segcast.toml"], "no partial file is left"


@as_root
def test_an_owner_a_user_namespace_does_not_map_is_said_not_an_invalid_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root in a rootless container cannot give a file to a user its namespace does not map: fchown
    fails with EINVAL, and the save answered a bare "Invalid argument" naming no cause nor fix."""
    path = write(tmp_path, STREAM_A)
    os.chown(path, OTHER_UID, OTHER_GID)

    def unmapped(*args: object) -> None:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(os, "fchown", unmapped)
    with pytest.raises(ConfigError, match=rf"^segcast\.toml was not saved: it belongs to uid {OTHER_UID}, "):
        save_b(path)
    assert path.read_text() == STREAM_A and os.listdir(tmp_path) == ["segcast.toml"]


@as_root
async def test_another_users_file_is_not_offered_a_save_where_segcast_is_not_root(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group-writable, it passed every check of whether it could be saved, and each save then failed: not
    root, segcast would take the file from its owner (`server.file_saving._take_owner`)."""
    path = write(tmp_path, STREAM_A)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    os.chown(path, OTHER_UID, OTHER_GID)
    path.chmod(0o666)
    assert await offered(client) == (True, True)
    monkeypatch.setattr(os, "geteuid", lambda: OTHER_UID + 1)  # as a process of another user sees it
    await offered_eventually(client, (False, False))


@as_root
async def test_a_file_of_a_user_the_namespace_does_not_map_is_not_offered_a_save(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root in a rootless container passed the owner check, and each save then failed: it cannot give a
    file to a user its namespace does not map."""
    path = write(tmp_path, STREAM_A)
    os.chown(path, OTHER_UID, OTHER_GID)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    assert await offered(client) == (True, True)
    uid_map = tmp_path / "uid_map"
    uid_map.write_text("         0       1000          1\n")  # root alone, as `unshare --map-root-user` maps
    monkeypatch.setattr("server.file_saving.UID_MAP", uid_map)
    await offered_eventually(client, (False, False))


@as_root
def test_in_a_rootless_containers_usual_map_a_file_of_the_overflow_id_is_anothers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subordinate-id maps (``0 100000 65536``) include 65534, the id a namespace shows for an owner it does
    not map: such a file passed as root's to give back, and was then called read-only."""
    uid_map, overflow = tmp_path / "uid_map", tmp_path / "overflowuid"
    uid_map.write_text("         0     100000      65536\n")
    overflow.write_text("65534\n")
    monkeypatch.setattr("server.file_saving.UID_MAP", uid_map)
    monkeypatch.setattr("server.file_saving.OVERFLOW_UID", overflow)
    path = write(tmp_path, STREAM_A)
    os.chown(path, OTHER_UID, OTHER_GID)
    assert config_file_unwritable(path) is None, "an owner the map has"
    os.chown(path, 65534, 65534)
    assert config_file_unwritable(path) is not None
    with pytest.raises(ConfigError, match=r"^segcast\.toml was not saved: it belongs to uid 65534, "):
        save_b(path)
    uid_map.write_text("")  # a namespace made, its map not written yet: nothing can be said
    assert config_file_unwritable(path) is None


@as_root
def test_another_users_file_is_said_to_be_theirs_not_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mode 644, another user's file is not writable for segcast's user: it was called read-only, and made
    writable (chmod 666) it was then refused as another user's."""
    path = write(tmp_path, STREAM_A)
    os.chown(path, OTHER_UID, OTHER_GID)
    real_access = os.access
    monkeypatch.setattr(os, "geteuid", lambda: OTHER_UID + 1)  # a process of another user, not root
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != path and real_access(p, mode, **kw))
    with pytest.raises(ConfigError, match=rf"^segcast\.toml was not saved: it belongs to uid {OTHER_UID}, "):
        save_b(path)


@as_root
def test_a_group_segcast_cannot_keep_gets_none_of_the_old_groups_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file stays its owner's, but goes to segcast's group, which must not read what the old group could."""
    path = write(tmp_path, STREAM_A)
    os.chown(path, os.geteuid(), OTHER_GID)
    path.chmod(0o640)
    monkeypatch.setattr(os, "fchown", refuse_chown)
    save_b(path)
    saved = path.stat()
    assert (saved.st_uid, saved.st_gid, stat.S_IMODE(saved.st_mode)) == (os.geteuid(), os.getegid(), 0o600)


@pytest.mark.parametrize("stray", ["folder", "file"])
def test_a_partial_file_someone_else_left_is_neither_used_nor_removed(tmp_path: Path, stray: str) -> None:
    """Every save wrote ``.<name>.partial``: two segcasts saving one file wrote into one partial file, and a
    folder of that name stopped every save."""
    path = write(tmp_path, STREAM_A)
    partial = tmp_path / ".segcast.toml.partial"
    if stray == "folder":
        partial.mkdir()
    else:
        partial.write_text("another process's")
    save_b(path)
    assert [stream.stream_id for stream in load_config(path).streams] == ["b"]
    assert partial.is_dir() if stray == "folder" else partial.read_text() == "another process's"
    assert sorted(os.listdir(tmp_path)) == [".segcast.toml.partial", "segcast.toml"]


async def test_a_file_mounted_by_itself_is_said_to_be_and_its_folder_to_be_mounted_instead(
    start_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker's single-file bind mount: the rename over it fails with EBUSY, and the answer named
    segcast's own partial file ("Device or resource busy: /config/.cams.toml.partial")."""
    path = write(tmp_path, STREAM_A)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    real_replace = Path.replace

    def onto_a_mount_point(self: Path, target: Path) -> Path:
        if Path(target) == path:  # what rename(2) says of a target that is a mount point
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(self), str(target))
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", onto_a_mount_point)
    response = await client.patch("/api/streams/a?persist=1", json={"iou": 0.6})
    assert response.status == 500, await response.text()
    error = (await response.json())["error"]
    assert "segcast.toml" in error and "mounted by itself" in error, error
    assert "mount its folder instead" in error and "README, Docker" in error, error
    assert ".partial" not in error, error
    assert path.read_text() == STREAM_A
    assert os.listdir(tmp_path) == ["segcast.toml"]


def test_a_file_on_a_read_only_file_system_says_so_not_to_make_it_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chmod cannot make a read-only mount writable: the message sent the admin to the wrong fix. A
    read-only mount is what its statvfs and access() say (a real one cannot be made in a test)."""
    path = write(tmp_path, STREAM_A)
    real_statvfs, real_access = os.statvfs, os.access

    def read_only_mount(name: object) -> object:
        answer = real_statvfs(name)  # type: ignore[arg-type]
        if not Path(str(name)).is_relative_to(tmp_path):
            return answer
        fields = list(answer)
        fields[8] |= os.ST_RDONLY  # f_flag
        return os.statvfs_result(fields)

    def no_writes_there(name: object, mode: int, **kwargs: object) -> bool:
        if mode & os.W_OK and Path(str(name)).is_relative_to(tmp_path):
            return False  # EROFS, for root too
        return real_access(name, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "statvfs", read_only_mount)
    monkeypatch.setattr(os, "access", no_writes_there)
    with pytest.raises(ConfigError) as refused:
        save_b(path)
    assert str(refused.value).startswith("segcast.toml was not saved: it is on a read-only file system")
    assert "chmod cannot" in str(refused.value) and "make it writable" not in str(refused.value)
    assert path.read_text() == STREAM_A


def test_a_file_another_segcast_saved_is_not_said_to_be_edited_by_hand(tmp_path: Path) -> None:
    """Two segcasts on one file: the second one's save is refused, and must not blame a person's edit."""
    path = write(tmp_path, STREAM_A)
    first, second = ConfigFileState.of(load_config(path)), ConfigFileState.of(load_config(path))
    save_b(path, first)
    with pytest.raises(ConfigEditedError) as refused:
        save_b(path, second)
    assert "saved by another program" in str(refused.value), refused.value
    assert [stream.stream_id for stream in load_config(path).streams] == ["b"]


async def offered(client: TestClient) -> tuple[bool, bool]:
    """Whether the viewer (``config_file``) and stream ``a`` (``persistable``) offer a save to the config file."""
    viewer = await (await client.get("/api/viewer")).json()
    stream = await (await client.get("/api/streams/a")).json()
    return viewer["config_file"], stream["persistable"]


async def offered_eventually(client: TestClient, expected: tuple[bool, bool]) -> None:
    """Until `offered` is ``expected``: a stream's ``persistable`` is found out in the background, and each
    answer used for a few seconds (`server.http.saving.WRITABLE_ANSWER_KEPT_S`)."""

    async def reached() -> bool:
        return await offered(client) == expected

    await eventually(reached, what=f"config_file and persistable to be {expected}")


async def test_a_read_only_file_is_not_offered_a_save(start_server: Start, tmp_path: Path) -> None:
    """The viewer offered "Save to config file" (config_file, persistable) on a file mode 444: a save that could
    only fail. Asked again and again: made writable again, it is offered again."""
    path = write(tmp_path, STREAM_A)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    assert await offered(client) == (True, True)
    path.chmod(0o444)
    await offered_eventually(client, (False, False))
    path.chmod(0o644)
    await offered_eventually(client, (True, True))


def test_an_unsaveable_config_file_is_warned_of_at_start_only_under_save_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without ``save_config`` nothing is saved unasked, and a ``persist=1`` change is refused naming the
    fix when it is asked for: a warning at each start would be about a save no one wants. Mode 444 is
    read-only for root too (`server.file_saving.unwritable_reason`)."""
    path = write(tmp_path, STREAM_A)
    path.chmod(0o444)
    with caplog.at_level(logging.WARNING, logger="server.app"):
        create_app(Settings(model=str(BUNDLED_MODEL), config_path=path, save_config=False))
        assert caplog.messages == []
        create_app(Settings(model=str(BUNDLED_MODEL), config_path=path, save_config=True))
    assert caplog.messages == [
        f"save_config = true, but changes made through the API cannot be saved to {path} now: "
        "segcast.toml is read-only: make it writable to save changes to it"
    ]


def test_a_save_that_drops_comments_keeps_the_file_as_it_was_in_a_bak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, COMMENTED)
    path.chmod(0o640)
    with caplog.at_level(logging.INFO, logger="server.persist"):
        save_b(path)
    backup = tmp_path / "segcast.toml.bak"
    assert backup.read_text() == COMMENTED
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640, "the .bak is as private as the file"
    saved = path.read_text()
    assert saved.startswith(COMMENTED.split("\n\n")[0]), "the comments at the top are kept in the file"
    assert "the port our proxy expects" not in saved and "the gate camera" not in saved
    said = [record for record in caplog.records if "segcast.toml.bak" in record.getMessage()]
    assert [record.levelno for record in said] == [logging.INFO], "said once, for the save that dropped them"


def test_a_save_of_a_file_with_comments_only_at_its_top_keeps_no_bak(tmp_path: Path) -> None:
    """Those are kept in the file; a '#' in a string is no comment."""
    text = '# cams.toml\n\n[[streams]]\nid = "a"\nuri = "videos/a.mp4#rate=max"\n'
    path = write(tmp_path, text)
    save_b(path)
    assert path.read_text().startswith("# cams.toml\n")
    assert os.listdir(tmp_path) == ["segcast.toml"]


async def test_a_save_says_how_many_streams_it_saved_in_words_that_agree(
    start_server: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It said "saved 1 streams"."""
    path = write(tmp_path, STREAM_A)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path)
    with caplog.at_level(logging.INFO, logger="server.http.saving"):
        assert (await client.patch("/api/streams/a?persist=1", json={"iou": 0.6})).status == 200
        added = await client.post("/api/streams?persist=1", json={"id": "b", "uri": "scene:?seed=2"})
        assert added.status == 201, await added.text()
    said = [message for message in caplog.messages if message.startswith("saved ")]
    assert said == [f"saved 1 stream to {path}", f"saved 2 streams to {path}"]


async def test_persist_1_on_a_read_only_config_file_is_refused_and_persist_0_or_save_config_makes_the_change(
    start_server: Start, tmp_path: Path
) -> None:
    """``?persist=1`` asks for a save, so it is refused without one (409); the refusal's way round it is
    ``?persist=0`` (it said "without ?persist=1", which under ``save_config = true`` still saves: 500),
    and under ``save_config`` alone the change is made and the answer says it was not saved (500)."""
    text = "[server]\nsave_config = true\n\n" + STREAM_A
    path = write(tmp_path, text)
    path.chmod(0o444)
    client = await start_server(StreamConfig("a", "scene:"), config_path=path, save_config=True)
    asked = await client.patch("/api/streams/a?persist=1", json={"iou": 0.6})
    assert asked.status == 409, await asked.text()
    assert (await asked.json())["error"] == (
        "nothing was changed: ?persist=1 asked to save the change, and segcast.toml is read-only: make it "
        "writable to save changes to it. Make the change with ?persist=0 to leave the file as it is (the change "
        "then lasts until segcast restarts)"
    )
    assert (await (await client.get("/api/streams/a")).json())["options"]["iou"] == StreamOptions().iou
    advised = await client.patch("/api/streams/a?persist=0", json={"iou": 0.6})
    assert advised.status == 200, await advised.text()
    implied = await client.patch("/api/streams/a", json={"iou": 0.5})
    assert implied.status == 500, await implied.text()
    assert (await implied.json())["error"].startswith(
        "the change is in effect, but not saved (segcast.toml was not saved: it is read-only: make it writable"
    )
    assert (await (await client.get("/api/streams/a")).json())["options"]["iou"] == 0.5
    assert path.read_text() == text


async def test_persist_1_that_would_write_nothing_is_not_refused_on_a_read_only_config_file(
    start_server: Start, tmp_path: Path
) -> None:
    """Clients that always send ``?persist=1`` were refused (409) a change whose save writes nothing, the file
    saying so already: removing a stream it never held, adding back one it holds as it was (one the API
    saved there: the file's own, added back, would become the API's), a PATCH that changes nothing. A
    change it would write is still refused."""
    text = f"{STREAM_A}from_api = true\n"
    path = write(tmp_path, text)
    client = await start_server(StreamConfig("a", "scene:", from_api=True), config_path=path)
    assert (await client.post("/api/streams", json={"id": "b", "uri": "scene:?seed=2"})).status == 201
    assert (await client.delete("/api/streams/a?persist=0")).status == 204
    path.chmod(0o444)
    removed = await client.delete("/api/streams/b?persist=1")
    assert removed.status == 204, await removed.text()
    added_back = await client.post("/api/streams?persist=1", json={"id": "a", "uri": "scene:"})
    assert added_back.status == 201, await added_back.text()
    unchanged = await client.patch("/api/streams/a?persist=1", json={"iou": StreamOptions().iou})
    assert unchanged.status == 200, await unchanged.text()
    changed = await client.patch("/api/streams/a?persist=1", json={"iou": 0.6})
    assert changed.status == 409, await changed.text()
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert [(s["id"], s["options"]["iou"]) for s in streams] == [("a", StreamOptions().iou)]
    assert path.read_text() == text


async def test_a_file_made_read_only_while_an_older_look_is_under_way_is_refused_a_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look a ``?persist=1`` waits for may have found the file writable before it was made read-only: its
    answer is older than the request, and the save must be refused on a look of its own."""
    path = write(tmp_path, STREAM_A)
    looked, answer = threading.Event(), threading.Event()
    look = saving.config_file_unwritable

    def looked_before_answering(asked: Path) -> str | None:
        reason = look(asked)
        looked.set()
        answer.wait(FINISH_TIMEOUT_S)
        return reason

    monkeypatch.setattr(saving, "config_file_unwritable", looked_before_answering)
    writability = SaveRefusal(path)
    try:
        assert writability.known() is not None, "no look has answered yet"
        assert await asyncio.to_thread(looked.wait, FINISH_TIMEOUT_S), "the first look found the file writable"
        path.chmod(0o444)
        asyncio.get_running_loop().call_soon(answer.set)  # once the request waits for the older look
        reason = await writability.now()
    finally:
        answer.set()
        writability.shutdown()
    assert reason is not None and "read-only" in reason, reason
