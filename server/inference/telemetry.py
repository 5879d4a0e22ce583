"""segcast sends nothing anywhere unasked, and keeps ultralytics from doing so in its process.

ultralytics reports anonymous usage events (the model, its speed, the CPU and GPU) to Google
Analytics after every prediction while its ``sync`` setting is on, which it is by default, and probes
the internet with DNS look-ups when it is imported. A server that runs next to people's cameras must
not phone home, and should not wait on DNS to start.

Both are switched off for segcast's process only: the user's ultralytics settings file is neither
read for this nor written, so ``yolo`` used elsewhere behaves as its owner configured it. Model
downloads do not depend on ultralytics' network checks; segcast makes them itself (`server.inference.weights`).
"""

from __future__ import annotations

import os
import sys

#: ultralytics' own switch: with it, ultralytics counts itself offline, so it sends no events or error
#: reports, checks PyPI for nothing and never tries to pip-install a missing package at run time.
OFFLINE_ENV = "YOLO_OFFLINE"


def switch_off_ultralytics_telemetry() -> None:
    """Make sure ultralytics sends no usage events from this process.

    Called first thing on start, before ultralytics is imported, so its import-time internet probe is
    skipped too; and again where a model is loaded, for an ultralytics that other code imported first
    (it decided at import whether to send events).
    """
    os.environ[OFFLINE_ENV] = "1"
    if "ultralytics" in sys.modules:
        from ultralytics.utils.events import events

        events.enabled = False
