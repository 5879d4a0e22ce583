"""deploy/prometheus/segcast-alerts.yml, evaluated by `promtool test rules` on series shaped like
segcast's /metrics (what Prometheus adds: `instance`, `job="segcast"`).

Each alert must fire for its case once its `for:` has passed, with the annotations a person acts on,
and stay quiet for a healthy node; a cause shared by every stream of a node (its Triton out of reach)
is one alert naming it, not one per stream. tests/test_overload.py checks SegcastStreamsBehind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.components import require_component

ALERTS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "segcast-alerts.yml"
STATES = ("starting", "live", "reconnecting", "ended", "failed")
HISTORY = "history"
HOOK = "webhook http://hooks.local/***"


def node(instance: str, **labels: str) -> str:
    """The labels of a series scraped from ``instance``, with ``labels``, in PromQL's braces."""
    pairs = {"instance": instance, "job": "segcast", **labels}
    return "{" + ",".join(f'{key}="{value}"' for key, value in pairs.items()) + "}"


def stream_in(instance: str, stream: str, state: str, minutes: int = 80) -> dict[str, str]:
    """segcast_stream_state of a stream in ``state`` all along: 1 for it, 0 for every other."""
    return {
        f"segcast_stream_state{node(instance, stream=stream, state=s)}": f"{int(s == state)}x{minutes}" for s in STATES
    }


def healthy_node(instance: str, minutes: int = 80) -> dict[str, str]:
    """A node that answers, infers, has a live camera and a file that ended, and whose outputs deliver."""
    return {
        f"up{node(instance)}": f"1x{minutes}",
        f"segcast_inference_available{node(instance)}": f"1x{minutes}",
        **stream_in(instance, "door", "live", minutes),
        **stream_in(instance, "clip", "ended", minutes),
        f"segcast_frames_processed_total{node(instance, stream='door')}": f"0+600x{minutes}",
        f"segcast_inference_errors_total{node(instance, stream='door')}": f"0x{minutes}",
        f"segcast_stream_behind{node(instance, stream='door')}": f"0x{minutes}",
        f"segcast_event_output_up{node(instance, output=HISTORY)}": f"1x{minutes}",
        f"segcast_event_output_up{node(instance, output=HOOK)}": f"1x{minutes}",
        f"segcast_event_output_upkeep_failures_total{node(instance, output=HISTORY)}": f"0x{minutes}",
        f"segcast_event_output_upkeep_failures_total{node(instance, output=HOOK)}": f"0x{minutes}",
    }


def rules() -> dict[str, dict[str, Any]]:
    """The file's alerting rules by name."""
    [group] = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def fired(alertname: str, instance: str, **labels: str) -> dict[str, Any]:
    """The alert ``alertname`` firing for ``instance`` and ``labels``, its annotations filled in."""
    every = {"instance": instance, "job": "segcast", **labels}
    annotations = {}
    for key, text in rules()[alertname]["annotations"].items():
        for label, value in every.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", value)
        assert "{{" not in text, f"{alertname}: a template this test does not fill in: {text}"
        annotations[key] = text
    return {"exp_labels": every, "exp_annotations": annotations}


def promtool_test(tmp_path: Path, series: dict[str, str], checks: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
    """`promtool test rules` of the file on ``series`` (a sample a minute): at each (eval_time,
    alertname), exactly the alerts given fire."""
    promtool = shutil.which("promtool")
    require_component(promtool is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert promtool is not None
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "alert_rule_test": [
                    {"eval_time": at, "alertname": name, "exp_alerts": alerts} for at, name, alerts in checks
                ],
            }
        ],
    }
    path = tmp_path / "alert-tests.yml"  # JSON is YAML
    path.write_text(json.dumps(tests, indent=1))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_healthy_node_fires_no_alert(tmp_path: Path) -> None:
    """Its file that `ended` included: a video played to its end is done, not down."""
    promtool_test(tmp_path, healthy_node("node-1:8080"), [("70m", name, []) for name in rules()])


def test_a_stream_not_live_for_five_minutes_fires_naming_its_state(tmp_path: Path) -> None:
    # Given a camera never reached, one refused for good, a file whose opening hangs, and a camera
    # that came back after three minutes
    series = healthy_node("node-1:8080")
    series |= stream_in("node-1:8080", "yard", "reconnecting")
    series |= stream_in("node-1:8080", "gone", "failed")
    series |= stream_in("node-1:8080", "share", "starting")
    back = {s: "0 0 0 0 1x76" if s == "live" else ("1 1 1 1 0x76" if s == "reconnecting" else "0x80") for s in STATES}
    series |= {f"segcast_stream_state{node('node-1:8080', stream='back', state=s)}": v for s, v in back.items()}
    # Then nothing fires within its first five minutes, and each stream still not live fires after them
    not_live = [
        fired("SegcastStreamNotLive", "node-1:8080", stream=stream, state=state)
        for stream, state in (("yard", "reconnecting"), ("gone", "failed"), ("share", "starting"))
    ]
    promtool_test(
        tmp_path,
        series,
        [("4m", "SegcastStreamNotLive", []), ("6m", "SegcastStreamNotLive", not_live)],
    )


def test_a_node_without_inference_is_one_alert_naming_it_not_one_per_stream(tmp_path: Path) -> None:
    # Given node 1 with two cameras that never connect, and its Triton out of reach: its live scene
    # stream's every frame fails. Node 2 infers, but every frame of its stream is refused
    series = healthy_node("node-1:8080") | healthy_node("node-2:8080")
    series[f"segcast_inference_available{node('node-1:8080')}"] = "0x80"
    for camera in ("cam-a", "cam-b"):
        series |= stream_in("node-1:8080", camera, "reconnecting")
    for instance in ("node-1:8080", "node-2:8080"):
        series[f"segcast_frames_processed_total{node(instance, stream='door')}"] = "0x80"
        series[f"segcast_inference_errors_total{node(instance, stream='door')}"] = "0+600x80"
    # Then node 1 has its inference alert after two minutes, and its cameras' after five; its stream's
    # failing frames are that one cause, while node 2's stream, whose frames fail alone, fires
    cameras = [fired("SegcastStreamNotLive", "node-1:8080", stream=c, state="reconnecting") for c in ("cam-a", "cam-b")]
    promtool_test(
        tmp_path,
        series,
        [
            ("1m", "SegcastInferenceUnavailable", []),
            ("3m", "SegcastInferenceUnavailable", [fired("SegcastInferenceUnavailable", "node-1:8080")]),
            ("10m", "SegcastInferenceUnavailable", [fired("SegcastInferenceUnavailable", "node-1:8080")]),
            ("10m", "SegcastStreamNotLive", cameras),
            ("10m", "SegcastStreamFramesAllFail", [fired("SegcastStreamFramesAllFail", "node-2:8080", stream="door")]),
        ],
    )


def test_an_event_output_down_for_ten_minutes_fires(tmp_path: Path) -> None:
    # Given a node whose webhook fails from the start, while its history stores
    series = healthy_node("node-1:8080")
    series[f"segcast_event_output_up{node('node-1:8080', output=HOOK)}"] = "0x80"
    # Then the webhook alone fires, once it has failed for ten minutes
    webhook = fired("SegcastEventOutputDown", "node-1:8080", output=HOOK)
    promtool_test(
        tmp_path,
        series,
        [("9m", "SegcastEventOutputDown", []), ("11m", "SegcastEventOutputDown", [webhook])],
    )


def test_a_history_upkeep_failure_fires_for_an_hour(tmp_path: Path) -> None:
    # Given node 1's history failing to delete old events once, at minute 5; node 2's never
    series = healthy_node("node-1:8080") | healthy_node("node-2:8080")
    series[f"segcast_event_output_upkeep_failures_total{node('node-1:8080', output=HISTORY)}"] = "0 0 0 0 0 1x75"
    # Then node 1's history fires from that failure on, and no longer once an hour has passed without one
    history = fired("SegcastHistoryUpkeepFailing", "node-1:8080", output=HISTORY)
    promtool_test(
        tmp_path,
        series,
        [
            ("4m", "SegcastHistoryUpkeepFailing", []),
            ("6m", "SegcastHistoryUpkeepFailing", [history]),
            ("60m", "SegcastHistoryUpkeepFailing", [history]),
            ("70m", "SegcastHistoryUpkeepFailing", []),
        ],
    )
