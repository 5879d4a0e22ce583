"""Saving the config file at its edges: a file gone before segcast ever looked at it again, a file written
where there was none, and one save after another on the same state."""

from __future__ import annotations

import stat
from pathlib import Path

from server.config import StreamConfig, load_config
from server.file_saving import write_whole
from server.persist import ConfigFileState, write_config

TWO_STREAMS = '[[streams]]\nid = "a"\nuri = "scene:?seed=1"\n\n[[streams]]\nid = "b"\nuri = "scene:?seed=2"\n'


def test_a_config_file_removed_before_the_first_look_is_said_to_be_gone(tmp_path: Path) -> None:
    """Nothing was seen of the file yet, and now there is nothing to see: that is no match with the file
    segcast read, and a save would put back a file its admin moved away."""
    path = tmp_path / "segcast.toml"
    path.write_text(TWO_STREAMS)
    state = ConfigFileState.of(load_config(path))
    path.unlink()
    reason = state.edited(path)
    assert reason is not None and "segcast.toml was removed or moved away" in reason


def test_a_config_file_written_where_there_was_none_is_its_owners_alone(tmp_path: Path) -> None:
    """With no earlier file to take permissions from, the new one may hold access tokens: no one else reads it."""
    target = tmp_path / "segcast.toml"
    write_whole(target, b'[auth]\nadmin_tokens = ["admin-token-0123456789abcdef"]\n', None, target.name)
    assert oct(stat.S_IMODE(target.stat().st_mode)) == "0o600"


def test_a_second_save_keeps_the_first(tmp_path: Path) -> None:
    """Each API save changes one stream over what the state says is saved: after the first, that is its."""
    path = tmp_path / "segcast.toml"
    path.write_text(TWO_STREAMS)
    running = load_config(path)
    state = ConfigFileState.of(running)
    write_config(running, state.with_stream("a", StreamConfig("a", "scene:?seed=11")), state)
    write_config(running, state.with_stream("b", StreamConfig("b", "scene:?seed=22")), state)
    saved = [(stream.stream_id, stream.uri) for stream in load_config(path).streams]
    assert saved == [("a", "scene:?seed=11"), ("b", "scene:?seed=22")]
