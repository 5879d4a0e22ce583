"""Saving API changes to the config file when it goes wrong, and tracker settings a save could write."""

from __future__ import annotations

import errno
import os
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from ultralytics.trackers.utils.gmc import GMC

from server.cli import build_parser, settings_from_args
from server.config import ConfigError, StreamConfig, load_config
from server.options import StreamOptions
from server.persist import ConfigEditedError, ConfigFileState, write_config

Start = Callable[..., Awaitable[TestClient]]
GMC_CHOICES = ("sparseOptFlow", "orb", "sift", "ecc", "none")


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
    with pytest.raises(ConfigError, match=rf"^segcast\.toml: streams\[0\]\.tracker_settings\.gmc_method: .*{choices}"):
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
    with pytest.raises(ConfigEditedError, match=r"^segcast\.toml was edited or removed since segcast read"):
        write_config(settings, [StreamConfig("b", "scene:?seed=2")], state)
    assert not path.exists(), "a file removed is not put back"
