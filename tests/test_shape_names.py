"""Zone and line names say which letters they take: ASCII ones, as MQTT topics and Home Assistant ids need."""

from __future__ import annotations

import pytest

from server.analytics.shapes import parse_lines, parse_zones

SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100]]
RULE = (
    "expected 1 to 64 ASCII letters (a-z, A-Z), digits, '-' or '_' (names go into MQTT topics and Home Assistant ids)"
)


@pytest.mark.parametrize("name", ["Tür", "café"])
def test_a_name_with_a_letter_outside_ascii_is_told_only_ascii_letters_are_taken(name: str) -> None:
    """It said "expected 1 to 64 letters, digits, '-' or '_', got "Tür"": to a German user, ü is a letter."""
    with pytest.raises(ValueError) as zone:
        parse_zones([{"name": name, "points": SQUARE}])
    assert str(zone.value) == f'zones[0].name: {RULE}, got "{name}"'
    with pytest.raises(ValueError) as line:
        parse_lines([{"name": name, "points": [[0, 50], [100, 50]]}])
    assert str(line.value) == f'lines[0].name: {RULE}, got "{name}"'
