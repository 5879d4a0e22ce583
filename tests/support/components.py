"""Real components the tests drive (GStreamer's RTSP server, Chromium, Playwright, the export
runtimes): a missing one skips its tests where the suite runs by hand, and fails them in CI.

A developer without Chromium should still be able to run the rest of the suite, so by default a
missing component skips the tests that need it, with the reason. CI must never go green because a
component quietly went missing: `.ci/run` sets ``SEGCAST_REQUIRE_COMPONENTS=1``, and then the same
absence is a failure naming what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import pytest

REQUIRE_ENV = "SEGCAST_REQUIRE_COMPONENTS"


def components_required() -> bool:
    """Whether a missing component fails its tests instead of skipping them (CI)."""
    return os.environ.get(REQUIRE_ENV, "") == "1"


def require_component(available: bool, reason: str) -> None:
    """Skip the calling test, fixture or module (at import) unless ``available``; fail in CI.

    ``reason`` says what is needed and how to get it, e.g. "needs Debian's chromium at /usr/bin/chromium".
    """
    if available:
        return
    if components_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: a missing component is a failure)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, reason: str) -> ModuleType:
    """``name`` imported, or the test skipped (failed in CI) like `require_component`."""
    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    require_component(found, reason)
    return importlib.import_module(name)
