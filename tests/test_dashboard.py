"""The Grafana dashboard's queries, evaluated by Prometheus itself on series shaped like segcast's.

`promtool test rules` (Debian's prometheus package) runs PromQL on input series given as values over
time and compares the results: each panel's query, with Grafana's variables filled in, must give the
numbers a user reads off it for a known history. tests/test_analytics_api.py checks that the metric
names the dashboard uses are the ones segcast's /metrics exports, with these labels.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from server.analytics.events import Counts
from server.http.metrics import zone_object_samples
from tests.support.components import require_component
from tests.support.dashboard import DASHBOARD, EVENT_OUTPUT_METRICS, dashboard_metrics

RANGE = "10m"  # the dashboard's time range, as Grafana fills in $__range
LABELS = 'stream="door",zone="porch"'
HOOK = 'output="webhook http://hooks.local"'
HISTORY = 'output="history"'
#: The labels Prometheus adds to what it scrapes of each of two nodes.
NODE1 = 'instance="node-1:8080",job="segcast"'
NODE2 = 'instance="node-2:8080",job="segcast"'
NODE3 = 'instance="node-3:8080",job="segcast"'
#: Prometheus scraping itself: its own process_ figures, under the same names as segcast's.
PROMETHEUS = 'instance="localhost:9090",job="prometheus"'
#: Prometheus scraping Triton's metrics port (the `triton` job of deploy/prometheus/'s configs).
TRITON = 'instance="triton:8002",job="triton"'
#: The names the Triton panels query of Triton's own /metrics, not segcast's: tests/test_triton.py checks
#: that a real Triton exports each, for a model it served.
TRITON_METRICS = {
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_request_success",
    "nv_inference_count",
    "nv_inference_exec_count",
}
#: Ten minutes, one sample a minute: a person crosses the line inward every minute from 0 (none
#: outward), two people stand in the zone, and a visit of between 1 and 5 s ends every minute.
INPUT_SERIES = {
    'segcast_line_crossings_any_class_total{stream="door",line="gate",direction="in"}': "0+1x10",
    'segcast_line_crossings_any_class_total{stream="door",line="gate",direction="out"}': "0x10",
    f'segcast_zone_objects{{{LABELS},class="person"}}': "2x10",
    f'segcast_zone_objects{{{LABELS},class="car"}}': "0x10",
    f'segcast_zone_dwell_seconds_bucket{{{LABELS},le="1.0"}}': "0x10",
    f'segcast_zone_dwell_seconds_bucket{{{LABELS},le="5.0"}}': "0+1x10",
    f'segcast_zone_dwell_seconds_bucket{{{LABELS},le="+Inf"}}': "0+1x10",
    f"segcast_zone_dwell_seconds_count{{{LABELS}}}": "0+1x10",
    f"segcast_zone_dwell_seconds_sum{{{LABELS}}}": "0+3x10",
    # Two segcast nodes, each with its own history (every node's is named "history"). Node 1's history
    # delivers, but fails to delete an old event every minute; its webhook is down, giving up on 2 events
    # a minute and dropping 1, with 250 waiting. Node 2's history cannot write: it fails 1 event a minute.
    f"segcast_event_output_up{{{NODE1},{HISTORY}}}": "1x10",
    f"segcast_event_output_up{{{NODE1},{HOOK}}}": "0x10",
    f"segcast_event_output_up{{{NODE2},{HISTORY}}}": "0x10",
    f"segcast_event_output_failed_total{{{NODE1},{HISTORY}}}": "0x10",
    f"segcast_event_output_failed_total{{{NODE1},{HOOK}}}": "0+2x10",
    f"segcast_event_output_failed_total{{{NODE2},{HISTORY}}}": "0+1x10",
    f"segcast_event_output_dropped_total{{{NODE1},{HISTORY}}}": "0x10",
    f"segcast_event_output_dropped_total{{{NODE1},{HOOK}}}": "0+1x10",
    f"segcast_event_output_dropped_total{{{NODE2},{HISTORY}}}": "0x10",
    f"segcast_event_output_upkeep_failures_total{{{NODE1},{HISTORY}}}": "0+1x10",
    f"segcast_event_output_upkeep_failures_total{{{NODE1},{HOOK}}}": "0x10",
    f"segcast_event_output_upkeep_failures_total{{{NODE2},{HISTORY}}}": "0x10",
    f"segcast_event_output_queued{{{NODE1},{HISTORY}}}": "0x10",
    f"segcast_event_output_queued{{{NODE1},{HOOK}}}": "0+25x10",
    f"segcast_event_output_queued{{{NODE2},{HISTORY}}}": "0x10",
    # The fleet: node 1 has a live stream and one reconnecting; node 2's one stream is live but its
    # Triton cannot be reached; node 3 stopped answering before the time range (no segcast_ series).
    f"up{{{NODE1}}}": "1x10",
    f"up{{{NODE2}}}": "1x10",
    f"up{{{NODE3}}}": "0x10",
    f'segcast_stream_state{{{NODE1},stream="door",state="live"}}': "1x10",
    f'segcast_stream_state{{{NODE1},stream="door",state="reconnecting"}}': "0x10",
    f'segcast_stream_state{{{NODE1},stream="yard",state="live"}}': "0x10",
    f'segcast_stream_state{{{NODE1},stream="yard",state="reconnecting"}}': "1x10",
    f'segcast_stream_state{{{NODE2},stream="gate",state="live"}}': "1x10",
    f'segcast_stream_state{{{NODE2},stream="gate",state="reconnecting"}}': "0x10",
    f"segcast_inference_available{{{NODE1}}}": "1x10",
    f"segcast_inference_available{{{NODE2}}}": "0x10",
    # Node 1 leaks: 10 MB and 5 open files more every minute; node 2 is stuck: its event loop piles up
    # 10 tasks a minute while it spins a whole core. Prometheus' own process figures are not a node's.
    f"process_resident_memory_bytes{{{NODE1}}}": "400000000+10000000x10",
    f"process_resident_memory_bytes{{{NODE2}}}": "300000000x10",
    f"process_resident_memory_bytes{{{PROMETHEUS}}}": "90000000x10",
    f"process_open_fds{{{NODE1}}}": "40+5x10",
    f"process_open_fds{{{NODE2}}}": "30x10",
    f"process_open_fds{{{PROMETHEUS}}}": "12x10",
    f"segcast_event_loop_tasks{{{NODE1}}}": "20x10",
    f"segcast_event_loop_tasks{{{NODE2}}}": "20+10x10",
    f"process_cpu_seconds_total{{{NODE1}}}": "0+30x10",
    f"process_cpu_seconds_total{{{NODE2}}}": "0+60x10",
    f"process_cpu_seconds_total{{{PROMETHEUS}}}": "0+6x10",
    # Node 1's inference is busy half the time, its stream door's frames take 0.2 s; node 2's is busy all along.
    f"segcast_inference_busy{{{NODE1}}}": "0.5x10",
    f"segcast_inference_busy{{{NODE2}}}": "1x10",
    f'segcast_latency_seconds{{{NODE1},stream="door"}}': "0.2x10",
    # Both nodes' models are on one Triton: node 1's "seg" over gRPC, 10 requests a second waited for
    # 0.05 s each; node 2's "det" over HTTP, 2 a second of 0.1 s. Triton runs seg's images 4 to a batch,
    # each request 1 ms queued and 10 ms computed; det's alone, 10 ms queued and 20 ms computed; and a
    # model "other" that no node uses (another client's), which the panels leave out.
    f'segcast_model_info{{{NODE1},model="grpc://triton:8001/seg",server="triton:8001"}}': "1x10",
    f'segcast_model_info{{{NODE2},model="http://triton:8000/det",server="triton:8000"}}': "1x10",
    f"segcast_remote_requests_total{{{NODE1}}}": "0+600x10",
    f"segcast_remote_request_seconds_total{{{NODE1}}}": "0+30x10",
    f"segcast_remote_requests_total{{{NODE2}}}": "0+120x10",
    f"segcast_remote_request_seconds_total{{{NODE2}}}": "0+12x10",
    f'nv_inference_request_success{{{TRITON},model="seg",version="1"}}': "0+600x10",
    f'nv_inference_queue_duration_us{{{TRITON},model="seg",version="1"}}': "0+600000x10",
    f'nv_inference_compute_infer_duration_us{{{TRITON},model="seg",version="1"}}': "0+6000000x10",
    f'nv_inference_count{{{TRITON},model="seg",version="1"}}': "0+600x10",
    f'nv_inference_exec_count{{{TRITON},model="seg",version="1"}}': "0+150x10",
    f'nv_inference_request_success{{{TRITON},model="det",version="1"}}': "0+120x10",
    f'nv_inference_queue_duration_us{{{TRITON},model="det",version="1"}}': "0+1200000x10",
    f'nv_inference_compute_infer_duration_us{{{TRITON},model="det",version="1"}}': "0+2400000x10",
    f'nv_inference_count{{{TRITON},model="det",version="1"}}': "0+120x10",
    f'nv_inference_exec_count{{{TRITON},model="det",version="1"}}': "0+120x10",
    f'nv_inference_request_success{{{TRITON},model="other",version="1"}}': "0+60x10",
    f'nv_inference_queue_duration_us{{{TRITON},model="other",version="1"}}': "0+60000x10",
    f'nv_inference_compute_infer_duration_us{{{TRITON},model="other",version="1"}}': "0+60000x10",
    f'nv_inference_count{{{TRITON},model="other",version="1"}}': "0+60x10",
    f'nv_inference_exec_count{{{TRITON},model="other",version="1"}}': "0+60x10",
}
PORCH = '{stream="door",zone="porch"}'
N1, N2, N3 = 'instance="node-1:8080"', 'instance="node-2:8080"', 'instance="node-3:8080"'
SEG, DET = 'instance="triton:8002",model="seg"', 'instance="triton:8002",model="det"'
#: What each panel's query gives at the end of those ten minutes, by its legend's labels (a panel of
#: several queries: the first query's samples, then the next one's, as many for each).
EXPECTED: dict[str, list[tuple[str, float]]] = {
    "Nodes up": [(f'{{__name__="up",{node},job="segcast"}}', value) for node, value in ((N1, 1), (N2, 1), (N3, 0))],
    "Streams in each state, by node": [
        (f'{{{N1},state="live"}}', 1),
        (f'{{{N1},state="reconnecting"}}', 1),
        (f'{{{N2},state="live"}}', 1),
        (f'{{{N2},state="reconnecting"}}', 0),
    ],
    "Inference available, by node": [(f"{{{N1}}}", 1), (f"{{{N2}}}", 0)],
    "Memory by node": [(f"{{{N1}}}", 500000000), (f"{{{N2}}}", 300000000)],
    # Two queries: open files, then the event loop's tasks.
    "Open files and loop tasks by node": [(f"{{{N1}}}", 90), (f"{{{N2}}}", 30), (f"{{{N1}}}", 20), (f"{{{N2}}}", 120)],
    "CPU by node, in cores": [(f"{{{N1}}}", 0.5), (f"{{{N2}}}", 1)],
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
    # The outputs panels, one line per node and output: the two nodes' histories are not merged.
    "Event outputs up": [(f"{{{N1},{HISTORY}}}", 1), (f"{{{N1},{HOOK}}}", 0), (f"{{{N2},{HISTORY}}}", 0)],
    "Events lost per minute, by output": [
        (f"{{{N1},{HISTORY}}}", 0),
        (f"{{{N1},{HOOK}}}", 3),
        (f"{{{N2},{HISTORY}}}", 1),
    ],
    "Events waiting to be sent, by output": [
        (f"{{{N1},{HISTORY}}}", 0),
        (f"{{{N1},{HOOK}}}", 250),
        (f"{{{N2},{HISTORY}}}", 0),
    ],
    # Only the history has upkeep: the webhooks' and MQTT's counters, always 0, are not listed.
    "History upkeep failures in the time range": [(f"{{{N1},{HISTORY}}}", 10), (f"{{{N2},{HISTORY}}}", 0)],
    "Inference busy, by node": [(f"{{{N1}}}", 0.5), (f"{{{N2}}}", 1)],
    "Latency by stream": [(f'{{{N1},stream="door"}}', 0.2)],
    # Each node's requests named by its model: the groups of nodes on two models are told apart.
    "Triton request time per request, by node": [
        (f'{{{N1},model="grpc://triton:8001/seg"}}', 0.05),
        (f'{{{N2},model="http://triton:8000/det"}}', 0.1),
    ],
    # Triton's figures, in seconds, of the models the nodes use (not "other").
    "Triton queue time per request, by model": [(f"{{{SEG}}}", 0.001), (f"{{{DET}}}", 0.01)],
    "Triton compute time per request, by model": [(f"{{{SEG}}}", 0.01), (f"{{{DET}}}", 0.02)],
    "Triton batch size, by model": [(f"{{{SEG}}}", 4), (f"{{{DET}}}", 1)],
}


def test_every_panel_of_the_dashboard_shows_what_happened(tmp_path: Path) -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert {panel["title"] for panel in panels} == set(EXPECTED), "every panel has its expected values here"
    run_promtool(tmp_path, INPUT_SERIES, panel_checks(EXPECTED))


def test_every_panel_shows_only_the_nodes_chosen(tmp_path: Path) -> None:
    """The Node variable: one node's dashboard has none of another node's series."""
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    # From Prometheus' own `up`: a node with no cameras, or down for longer than the range, is listed too.
    assert variables["instance"]["query"]["query"] == 'label_values(up{job=~"segcast.*"}, instance)'
    assert variables["instance"]["allValue"] == ".*", "All keeps a node that is down and has no streams to list"
    assert "$instance" in variables["stream"]["query"]["query"], "the streams offered are the chosen nodes'"
    node_2 = {
        title: [(labels, value) for labels, value in samples if N1 not in labels and N3 not in labels]
        for title, samples in EXPECTED.items()
        if any(N2 in labels for labels, _ in samples)
    }
    assert len(node_2) >= 5, "the fleet's and the outputs' panels"
    # Node 1's and node 3's series are in the input, and must not show
    run_promtool(tmp_path, INPUT_SERIES, panel_checks(node_2, instance="node-2:8080"))
    targets = [target for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    unscoped = [t["expr"] for t in targets if 'instance=~"$instance"' not in t["expr"]]
    assert not unscoped, "every query keeps to the chosen nodes"


def test_two_nodes_streams_and_zones_of_the_same_name_are_shown_apart(tmp_path: Path) -> None:
    """Two sites, each with a stream `door` and a zone `porch`: under All, one line each, never their sum."""
    # Given node 1 with 2 people in the porch, a crossing a minute and a visit of 1 to 5 s a minute, and
    # node 2 with 3 people, two crossings a minute and two visits of under 1 s a minute
    series: dict[str, str] = {}
    for labels, people, crossings, short_visits, visits in ((NODE1, 2, 1, 0, 1), (NODE2, 3, 2, 2, 2)):
        zone = f"{labels},{LABELS}"
        series |= {
            f'segcast_line_crossings_any_class_total{{{labels},stream="door",line="gate",direction="in"}}': (
                f"0+{crossings}x10"
            ),
            f'segcast_zone_objects{{{zone},class="person"}}': f"{people}x10",
            f'segcast_zone_dwell_seconds_bucket{{{zone},le="1.0"}}': f"0+{short_visits}x10",
            f'segcast_zone_dwell_seconds_bucket{{{zone},le="5.0"}}': f"0+{visits}x10",
            f'segcast_zone_dwell_seconds_bucket{{{zone},le="+Inf"}}': f"0+{visits}x10",
            f"segcast_zone_dwell_seconds_count{{{zone}}}": f"0+{visits}x10",
        }
    # Then every zone and line panel has a line for each node, with its own numbers
    porch = {node: f"{{{node},{LABELS}}}" for node in (N1, N2)}
    gate = {node: f'{{{node},stream="door",line="gate",direction="in"}}' for node in (N1, N2)}
    expected: dict[str, list[tuple[str, float]]] = {
        "Objects in each zone now": [(porch[N1], 2), (porch[N2], 3)],
        "Objects in each zone by class": [
            (f'{{{N1},{LABELS},class="person"}}', 2),
            (f'{{{N2},{LABELS},class="person"}}', 3),
        ],
        "Line crossings per minute": [(gate[N1], 1), (gate[N2], 2)],
        "Line crossings since start": [(gate[N1], 10), (gate[N2], 20)],
        "Line crossings in the time range": [(gate[N1], 10), (gate[N2], 20)],
        # Node 2's visits all end within the first bucket, (0, 1] s: q of the way into it.
        "Zone dwell time, median and 95th percentile": [
            (porch[N1], 3),
            (porch[N2], 0.5),
            (porch[N1], 4.8),
            (porch[N2], 0.95),
        ],
        "Finished zone visits per minute": [(porch[N1], 1), (porch[N2], 2)],
    }
    run_promtool(tmp_path, series, panel_checks(expected))
    # And each line's legend says which node it is
    panels = [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["title"] in expected]
    assert all("{{instance}}" in target["legendFormat"] for panel in panels for target in panel["targets"])


def test_every_metric_a_panel_queries_is_checked_against_segcasts_metrics() -> None:
    """tests/test_analytics_api.py and tests/test_events_pipeline.py check that segcast exports the
    names `dashboard_metrics` finds: a process figure it missed would go unchecked."""
    targets = [target for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    # A name is followed by its labels or, for Triton's (all its series are wanted), by a range.
    queried = {name for target in targets for name in re.findall(r"\b([a-z_:]+)[{\[]", target["expr"])}
    assert "process_resident_memory_bytes" in queried
    assert queried >= TRITON_METRICS
    assert queried - {"up"} - TRITON_METRICS == dashboard_metrics(), (
        "`up` is Prometheus' own, the nv_ names Triton's (tests/test_triton.py), every other name segcast's"
    )


def test_the_triton_panels_show_only_the_models_of_the_nodes_chosen(tmp_path: Path) -> None:
    """Triton's series carry its own instance, never a node's: they follow the Node variable through
    the models the chosen nodes use (segcast_model_info), so node 2 alone shows its model, det."""
    titles = [title for title in EXPECTED if "Triton" in title]
    assert len(titles) == 4
    node_2 = {
        title: [(labels, value) for labels, value in EXPECTED[title] if "seg" not in labels and N1 not in labels]
        for title in titles
    }
    assert all(len(samples) == 1 for samples in node_2.values())
    run_promtool(tmp_path, INPUT_SERIES, panel_checks(node_2, instance="node-2:8080"))


def test_the_outputs_panels_name_each_outputs_node() -> None:
    """Every node's history is called "history": without its instance, a legend shows several as one."""
    targets = [target for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    outputs = [target for target in targets if EVENT_OUTPUT_METRICS in target["expr"]]
    assert outputs and all("{{instance}}" in target["legendFormat"] for target in outputs)


def test_a_stat_panel_reads_the_value_at_the_end_of_the_time_range() -> None:
    """As a range query, Grafana aligns a stat's last point down to its step: a week's "Line
    crossings in the time range" showed the count of up to several minutes before."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    stats = [panel for panel in panels if panel["type"] == "stat"]
    assert stats and all(target.get("instant") is True for panel in stats for target in panel["targets"])


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


def panel_checks(expected: dict[str, list[tuple[str, float]]], instance: str = ".*") -> list[dict[str, object]]:
    """A promtool check of each query of the panels named in ``expected``, with Grafana's variables
    filled in (every stream; the nodes ``instance`` matches: all, as the Node variable's All does), for
    the samples it should give at the end of the input (by its legend's labels; a panel of several
    queries: as many samples for each, in the queries' order)."""
    panels = [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["title"] in expected]
    assert {panel["title"] for panel in panels} == set(expected), "the dashboard has no such panel"
    checks: list[dict[str, object]] = []
    for panel in panels:
        samples = expected[panel["title"]]
        per_query, left = divmod(len(samples), len(panel["targets"]))
        assert not left, f"{panel['title']}: as many samples for each of its queries"
        for index, target in enumerate(panel["targets"]):
            expr = target["expr"].replace("$stream", ".*").replace("$instance", instance).replace("$__range", RANGE)
            query_expected = samples[index * per_query : (index + 1) * per_query]
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


#: Grafana's thresholds for a panel that sets none: green, red from 80.
GRAFANA_DEFAULT_STEPS = [{"color": "green", "value": None}, {"color": "red", "value": 80}]


def shown_colour(panel: dict, value: float) -> str:
    """The colour Grafana gives a stat panel's ``value``: a value mapping's, else its threshold step's."""
    defaults = panel["fieldConfig"]["defaults"]
    for mapping in defaults.get("mappings", []):
        shown = mapping["options"].get(f"{value:g}") if mapping["type"] == "value" else None
        if shown and "color" in shown:
            return shown["color"]
    steps = defaults.get("thresholds", {}).get("steps", GRAFANA_DEFAULT_STEPS)
    return [step["color"] for step in steps if step["value"] is None or step["value"] <= value][-1]


def test_a_stat_panel_of_something_failing_shows_it_red() -> None:
    """With no thresholds of its own, Grafana shows a stat green up to 80: an event output that fails
    read a green 0, and a history's 1 to 79 upkeep failures green too."""
    panels = [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] == "stat"]
    up_or_down = [panel for panel in panels if re.search(r"\bup\{|_up\{|_available\{", panel["targets"][0]["expr"])]
    failures = [panel for panel in panels if "failures_total" in panel["targets"][0]["expr"]]
    assert {"Event outputs up", "Nodes up"} <= {panel["title"] for panel in up_or_down}
    assert failures
    for panel in up_or_down:
        assert (shown_colour(panel, 0), shown_colour(panel, 1)) == ("red", "green"), panel["title"]
    for panel in failures:
        assert (shown_colour(panel, 0), shown_colour(panel, 1)) == ("green", "red"), panel["title"]
