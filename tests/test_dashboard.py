"""The Grafana dashboard's queries, evaluated by Prometheus itself on series shaped like segcast's.

`promtool test rules` (Debian's prometheus package) runs PromQL on input series given as values over
time and compares the results: each panel's query, with Grafana's variables filled in, must give the
numbers a user reads off it for a known history. tests/test_analytics_api.py checks that the metric
names the dashboard uses are the ones segcast's /metrics exports, with these labels.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from server.analytics.events import Counts
from server.http.metrics import zone_object_samples
from tests.support.components import require_component
from tests.support.dashboard import DASHBOARD

RANGE = "10m"  # the dashboard's time range, as Grafana fills in $__range
LABELS = 'stream="door",zone="porch"'
HOOK = 'output="webhook http://hooks.local"'
#: Ten minutes, one sample a minute: a person crosses the line inward every minute from 0 (none
#: outward), two people stand in the zone, and a visit of between 1 and 5 s ends every minute.
INPUT_SERIES = {
    'segcast_line_crossings_total{stream="door",line="gate",direction="in",class="person"}': "0+1x10",
    'segcast_line_crossings_total{stream="door",line="gate",direction="out",class="person"}': "0x10",
    f'segcast_zone_objects{{{LABELS},class="person"}}': "2x10",
    f'segcast_zone_objects{{{LABELS},class="car"}}': "0x10",
    f'segcast_zone_dwell_seconds_bucket{{{LABELS},le="1.0"}}': "0x10",
    f'segcast_zone_dwell_seconds_bucket{{{LABELS},le="5.0"}}': "0+1x10",
    f'segcast_zone_dwell_seconds_bucket{{{LABELS},le="+Inf"}}': "0+1x10",
    f"segcast_zone_dwell_seconds_count{{{LABELS}}}": "0+1x10",
    f"segcast_zone_dwell_seconds_sum{{{LABELS}}}": "0+3x10",
    # The history delivers, but fails to delete an old event every minute; the webhook is down, giving
    # up on 2 events a minute and dropping 1.
    'segcast_event_output_up{output="history"}': "1x10",
    f"segcast_event_output_up{{{HOOK}}}": "0x10",
    'segcast_event_output_failed_total{output="history"}': "0x10",
    f"segcast_event_output_failed_total{{{HOOK}}}": "0+2x10",
    'segcast_event_output_dropped_total{output="history"}': "0x10",
    f"segcast_event_output_dropped_total{{{HOOK}}}": "0+1x10",
    'segcast_event_output_upkeep_failures_total{output="history"}': "0+1x10",
    f"segcast_event_output_upkeep_failures_total{{{HOOK}}}": "0x10",
}
PORCH = '{stream="door",zone="porch"}'
#: What each panel's query gives at the end of those ten minutes, by its legend's labels (a panel of
#: several queries: one sample per query, in order).
EXPECTED = {
    "Objects in each zone now": [(PORCH, 2)],
    "Objects in each zone by class": [
        ('{stream="door",zone="porch",class="person"}', 2),
        ('{stream="door",zone="porch",class="car"}', 0),
    ],
    "Line crossings per minute": [
        ('{stream="door",line="gate",direction="in"}', 1),
        ('{stream="door",line="gate",direction="out"}', 0),
    ],
    "Line crossings since start": [
        ('{stream="door",line="gate",direction="in"}', 10),
        ('{stream="door",line="gate",direction="out"}', 0),
    ],
    "Line crossings in the time range": [
        ('{stream="door",line="gate",direction="in"}', 10),
        ('{stream="door",line="gate",direction="out"}', 0),
    ],
    # Visits between 1 and 5 s: Prometheus interpolates within the bucket, 1 + 4 * q.
    "Zone dwell time, median and 95th percentile": [(PORCH, 3), (PORCH, 4.8)],
    "Finished zone visits per minute": [(PORCH, 1)],
    "Event outputs up": [('{output="history"}', 1), (f"{{{HOOK}}}", 0)],
    "Events lost per minute, by output": [('{output="history"}', 0), (f"{{{HOOK}}}", 3)],
    "History upkeep failures in the time range": [('{output="history"}', 10), (f"{{{HOOK}}}", 0)],
}


def test_every_panel_of_the_dashboard_shows_what_happened(tmp_path: Path) -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert {panel["title"] for panel in panels} == set(EXPECTED), "every panel has its expected values here"
    run_promtool(tmp_path, INPUT_SERIES, panel_checks(EXPECTED))


def test_a_zone_nobody_has_entered_reads_0_not_no_data(tmp_path: Path) -> None:
    # Given a zone that watches every class and that nothing has entered, one limited to cars (listed
    # at 0 from the start), and one with two people in it, as segcast's /metrics gives them
    counts = Counts(zones={"porch": {}, "drive": {"car": 0}, "hall": {"person": 2}})
    series = {
        "segcast_zone_objects{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}": f"{value}x10"
        for labels, value in zone_object_samples({"door": counts})
    }
    # Then the zone panels show each zone at its count, the empty ones at 0, and nobody twice
    expected = {
        "Objects in each zone now": [
            ('{stream="door",zone="porch"}', 0),
            ('{stream="door",zone="drive"}', 0),
            ('{stream="door",zone="hall"}', 2),
        ],
        "Objects in each zone by class": [
            ('{stream="door",zone="porch"}', 0),
            ('{stream="door",zone="drive",class="car"}', 0),
            ('{stream="door",zone="hall",class="person"}', 2),
        ],
    }
    run_promtool(tmp_path, series, panel_checks(expected))


def panel_checks(expected: dict[str, list[tuple[str, float]]]) -> list[dict[str, object]]:
    """A promtool check of each query of the panels named in ``expected``, with Grafana's variables
    filled in, for the samples it should give at the end of the input (by its legend's labels; a
    panel of several queries: one sample per query, in order)."""
    panels = [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["title"] in expected]
    assert {panel["title"] for panel in panels} == set(expected), "the dashboard has no such panel"
    checks: list[dict[str, object]] = []
    for panel in panels:
        samples = iter(expected[panel["title"]])
        for target in panel["targets"]:
            expr = target["expr"].replace("$stream", ".*").replace("$__range", RANGE)
            query_expected = [next(samples)] if len(panel["targets"]) > 1 else list(samples)
            checks.append(
                {
                    "expr": expr,
                    "eval_time": RANGE,
                    "exp_samples": [{"labels": labels, "value": value} for labels, value in query_expected],
                }
            )
    return checks


def run_promtool(tmp_path: Path, input_series: dict[str, str], checks: list[dict[str, object]]) -> None:
    """Evaluate ``checks`` on ``input_series`` (one sample a minute) with `promtool test rules`."""
    promtool = shutil.which("promtool")
    require_component(promtool is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert promtool is not None
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": values} for series, values in input_series.items()],
                "promql_expr_test": checks,
            }
        ],
    }
    path = tmp_path / "dashboard-tests.yml"  # JSON is YAML
    path.write_text(json.dumps(tests, indent=1))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
