"""Stream ids from ``--source [ID=]URI`` flags: an id typed once is never refused as used twice."""

from __future__ import annotations

import pytest

from server.config_values import ConfigError
from server.source_flags import streams_from_flags


@pytest.mark.parametrize(
    ("values", "ids"),
    [
        (["front=/v/a.mp4", "/v/front.mp4"], ["front", "front-2"]),
        (["/v/front.mp4", "front=/v/a.mp4"], ["front-2", "front"]),
    ],
    ids=["named first", "named last"],
)
def test_a_named_source_keeps_its_id_wherever_an_unnamed_one_of_that_name_stands(
    values: list[str], ids: list[str]
) -> None:
    """The unnamed one came first and took "front": the named one was refused, "front used twice"."""
    streams = streams_from_flags(values)
    assert [(stream.stream_id, stream.uri) for stream in streams] == [
        (stream_id, value.rpartition("=")[2]) for stream_id, value in zip(ids, values, strict=True)
    ]


def test_an_id_given_twice_is_still_refused_and_taken_ids_are_avoided() -> None:
    with pytest.raises(ConfigError, match="'front' is used twice"):
        streams_from_flags(["/v/front.mp4", "front=/v/a.mp4", "front=/v/b.mp4"])
    streams = streams_from_flags(["/v/front.mp4", "front-2=/v/b.mp4"], taken={"front"})
    assert [stream.stream_id for stream in streams] == ["front-3", "front-2"]


def test_spaces_around_an_id_and_its_source_are_dropped_as_in_a_config_file() -> None:
    """A pasted path with a trailing space was "no such file: /v/yard.mp4 ", the space unseen."""
    streams = streams_from_flags(["yard=/v/yard.mp4 ", " gate = /v/gate.mp4\t", " /v/front.mp4  "])
    assert [(stream.stream_id, stream.uri) for stream in streams] == [
        ("yard", "/v/yard.mp4"),
        ("gate", "/v/gate.mp4"),
        ("front", "/v/front.mp4"),
    ]
