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

from tests.support.components import require_component

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "segcast-analytics.json"
RANGE = "10m"  # the dashboard's time range, as Grafana fills in $__range
LABELS = 'stream="door",zone="porch"'
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
}
PORCH = '{stream="door",zone="porch"}'
#: What each panel's query gives at the end of those ten minutes, by its legend's labels (a panel of
#: several queries: one sample per query, in order).
EXPECTED = {
    "Objects in each zone now": [(PORCH, 2)],
    "Objects in each zone by class": [('{zone="porch",class="person"}', 2), ('{zone="porch",class="car"}', 0)],
    "Line crossings per minute": [
        ('{stream="door",line="gate",direction="in"}', 1),
        ('{stream="door",line="gate",direction="out"}', 0),
    ],
    "Line crossings since start": [('{line="gate",direction="in"}', 10), ('{line="gate",direction="out"}', 0)],
    "Line crossings in the time range": [('{line="gate",direction="in"}', 10), ('{line="gate",direction="out"}', 0)],
    # Visits between 1 and 5 s: Prometheus interpolates within the bucket, 1 + 4 * q.
    "Zone dwell time, median and 95th percentile": [(PORCH, 3), (PORCH, 4.8)],
    "Finished zone visits per minute": [(PORCH, 1)],
}


def test_every_panel_of_the_dashboard_shows_what_happened(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    require_component(promtool is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert promtool is not None
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert {panel["title"] for panel in panels} == set(EXPECTED), "every panel has its expected values here"
    checks = []
    for panel in panels:
        expected = iter(EXPECTED[panel["title"]])
        for target in panel["targets"]:
            expr = target["expr"].replace("$stream", ".*").replace("$__range", RANGE)
            query_expected = [next(expected)] if len(panel["targets"]) > 1 else list(expected)
            checks.append(
                {
                    "expr": expr,
                    "eval_time": RANGE,
                    "exp_samples": [{"labels": labels, "value": value} for labels, value in query_expected],
                }
            )
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": values} for series, values in INPUT_SERIES.items()],
                "promql_expr_test": checks,
            }
        ],
    }
    path = tmp_path / "dashboard-tests.yml"  # JSON is YAML
    path.write_text(json.dumps(tests, indent=1))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
