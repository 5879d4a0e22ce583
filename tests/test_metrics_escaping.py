"""/metrics label values that need escaping (an event output's name, a model's class name) are read
back by Prometheus as they were: a quote, a backslash or a newline in one must not end the value or
break the line, which would make Prometheus drop the whole scrape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server.events.api import event_outputs_key
from server.events.sink import SinkHealth, SinkState
from tests.support.components import require_component

StartServer = Callable[..., Awaitable[TestClient]]
#: Every character the exposition format escapes in a label value.
AWKWARD_NAME = 'webhook "hooks" at C:\\out\nnext line'
#: Any time will do: Prometheus' backfill, which parses the text back here, wants one on each sample.
SAMPLE_TIME_S = 1_700_000_000


async def test_a_label_value_with_quotes_backslashes_and_newlines_is_read_back_as_it_was(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promtool = shutil.which("promtool")
    require_component(promtool is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert promtool is not None
    client = await start_server()
    awkward = SinkHealth(AWKWARD_NAME, SinkState.OK, delivered=0, dropped=0, failed=0, last_error=None)
    monkeypatch.setattr(client.app[event_outputs_key], "health", lambda: [awkward])
    text = await (await client.get("/metrics")).text()

    assert_parses(promtool, text)
    assert read_back(promtool, tmp_path, text, "segcast_event_output_up") == [AWKWARD_NAME]


def assert_parses(promtool: str, text: str) -> None:
    """Prometheus' own parser of the text format takes the whole scrape (and its linter finds nothing)."""
    linted = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert linted.returncode == 0, linted.stderr


def read_back(promtool: str, tmp_path: Path, text: str, family: str) -> list[str]:
    """The ``output`` label of each of ``family``'s samples in ``text``, as Prometheus stores it:
    the family backfilled into a TSDB (timestamps added, as backfilling needs) and dumped."""
    lines = text.splitlines()
    header = [line for line in lines if line.startswith((f"# HELP {family} ", f"# TYPE {family} "))]
    samples = [f"{line} {SAMPLE_TIME_S}" for line in lines if line.startswith(f"{family}{{")]
    source = tmp_path / "scrape.om"
    source.write_text("\n".join([*header, *samples, "# EOF"]) + "\n")
    blocks = tmp_path / "blocks"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(blocks)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (blocks / "wal").mkdir()  # the dump reads a WAL too, which backfilling does not write
    dumped = subprocess.run(
        [promtool, "tsdb", "dump", str(blocks)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    # The dump quotes label values as Go does; for these characters that is JSON's quoting.
    return [json.loads(value) for value in re.findall(r'output=("(?:[^"\\]|\\.)*")', dumped)]
