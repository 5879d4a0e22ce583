"""The Grafana dashboard in deploy/, as the tests that check it against segcast's /metrics read it."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "segcast-analytics.json"
#: Metrics a server has only with event outputs configured.
EVENT_OUTPUT_METRICS = "segcast_event_output_"
#: Metrics a server has only with a model on Triton (tests/test_triton.py checks them there).
REMOTE_MODEL_METRICS = "segcast_remote_"
#: segcast's own metrics and the process figures (Prometheus' names: see server/http/process_metrics.py).
_METRIC = re.compile(r"\b(?:segcast|process)_[a-z_]+")


def dashboard_metrics() -> set[str]:
    """The names of every metric the dashboard's panels query."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {name for panel in panels for target in panel["targets"] for name in _METRIC.findall(target["expr"])}


def exported(name: str, metrics: str) -> bool:
    """Whether /metrics' text ``metrics`` has a sample of ``name`` (with labels or without)."""
    return f"\n{name}{{" in metrics or f"\n{name} " in metrics
