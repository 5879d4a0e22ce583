"""Zones and lines are in pixels unless ``units`` says otherwise: fractions that forgot it are refused with the fix.

Every point from 0 to 1 in pixels is within a pixel of the frame's top-left corner, where no zone
holds a track and no line is ever crossed: such a shape is never meant, while the same numbers as
fractions are the most common shape there is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.analytics.shapes import Units
from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.options import StreamOptions

Start = Callable[..., Awaitable[TestClient]]
HINT = 'did you mean units "fraction"?'
ACROSS = {"name": "door", "points": [[0.05, 0.7], [0.95, 0.7]]}  # under a pixel long, as pixels
DIAGONAL = {"name": "door", "points": [[0.1, 0.1], [0.9, 0.9]]}  # over a pixel long: it was accepted, to count nothing
PORCH = {"name": "porch", "points": [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]]}
WHOLE = {"name": "all", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}  # a square pixel: a zone, were it meant


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"lines": [ACROSS]}, "lines[0].points"),
        ({"lines": [DIAGONAL]}, "lines[0].points"),
        ({"zones": [PORCH]}, "zones[0].points"),
        ({"zones": [WHOLE]}, "zones[0].points"),
    ],
)
def test_fractions_without_units_are_refused_with_the_fix(options: dict[str, Any], where: str) -> None:
    with pytest.raises(ValueError) as caught:
        StreamOptions.from_mapping(options)
    assert str(caught.value).startswith(f"{where}: "), caught.value
    assert HINT in str(caught.value)


def test_the_same_points_with_units_fraction_are_taken() -> None:
    options = StreamOptions.from_mapping(
        {"lines": [{**DIAGONAL, "units": "fraction"}], "zones": [{**PORCH, "units": "fraction"}]}
    )
    assert options.lines[0].units is Units.FRACTION and options.zones[0].units is Units.FRACTION


def test_units_px_given_outright_keeps_such_points_pixels() -> None:
    options = StreamOptions.from_mapping({"lines": [{**DIAGONAL, "units": "px"}]})
    assert options.lines[0].units is Units.PX and options.lines[0].points == ((0.1, 0.1), (0.9, 0.9))
    with pytest.raises(ValueError) as caught:
        StreamOptions.from_mapping({"zones": [{**PORCH, "units": "px"}]})
    assert "too small" in str(caught.value) and HINT not in str(caught.value)


def test_pixels_beyond_one_without_units_are_pixels_as_before() -> None:
    options = StreamOptions.from_mapping({"lines": [{"name": "door", "points": [[0, 0], [1, 2]]}]})
    assert options.lines[0].units is Units.PX


def test_a_config_file_zone_without_units_names_the_file_stream_and_fix(tmp_path: Path) -> None:
    config = tmp_path / "cams.toml"
    config.write_text(
        '[[streams]]\nid = "cam"\nuri = "scene:?seed=1"\n'
        "zones = [{ name = 'porch', points = [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]] }]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value).startswith("cams.toml: streams[0] (id 'cam').zones[0].points: "), caught.value
    assert HINT in str(caught.value)


async def test_a_line_patched_in_fractions_without_units_is_a_400_with_the_fix(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=7"))
    response = await client.patch("/api/streams/cam", json={"lines": [DIAGONAL]})
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error.startswith("body.lines[0].points: ") and HINT in error, error
    stream = await (await client.get("/api/streams/cam")).json()
    assert stream["options"]["lines"] == []
