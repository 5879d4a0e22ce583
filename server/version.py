"""segcast's version as installed: one look-up for all that tell it (``segcast --version``, ``/healthz``,
the ``segcast_build_info`` metric, Home Assistant's device page)."""

from __future__ import annotations

from importlib import metadata


def _installed_version() -> str | None:
    """segcast's version as installed; None for a checkout that was never installed."""
    try:
        return metadata.version("segcast")
    except metadata.PackageNotFoundError:
        return None


#: Read as segcast's code is loaded: a newer version installed under a running server changes its files,
#: not the code it runs, so this is what the process runs. None for a checkout never installed.
INSTALLED_VERSION = _installed_version()
