"""The ``[events]`` table written back as TOML, for `server.persist.write_config`: saving an API change
must keep the outputs the file configured. Reading it is `server.events.config`'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path

from server.events.config import DEFAULT_HISTORY_FILE, HISTORY_KEYS, MQTT_KEYS, WEBHOOK_KEYS, EventsSettings
from server.events.toml_text import toml_string


def events_toml(settings: EventsSettings) -> list[str]:
    """``settings`` as TOML lines.

    A key is written only where reading the table without it would give another value (a history's
    ``path`` as the file wrote it, see `server.persist`): a default spelled out would stay in the file
    when a later release improves it. A table that is all defaults is written empty: it turns its output on.
    """
    lines: list[str] = []
    if settings.history is not None:
        lines += ["[events.history]", *_pairs(settings.history, HISTORY_KEYS, {"path": Path(DEFAULT_HISTORY_FILE)}), ""]
    for hook in settings.webhooks:
        lines += ["[[events.webhooks]]", *_pairs(hook, WEBHOOK_KEYS), ""]
    if settings.mqtt is not None:
        # Without tls, a table with a ca_file takes TLS on (`server.events.config`).
        lines += ["[events.mqtt]", *_pairs(settings.mqtt, MQTT_KEYS, {"tls": settings.mqtt.ca_file is not None}), ""]
    return lines


def _pairs(value: object, keys: tuple[str, ...], implied: Mapping[str, object] | None = None) -> list[str]:
    """``key = value`` lines of ``value``'s fields that are set and not their defaults (``implied`` where a
    field's default is not what a table without the key reads as)."""
    defaults = {f.name: f.default for f in fields(value) if f.default is not MISSING}  # type: ignore[arg-type]
    defaults.update(implied or {})
    pairs = []
    for key in keys:
        given = getattr(value, key)
        if given is not None and (key not in defaults or given != defaults[key]):
            pairs.append(f"{key} = {_toml(given)}")
    return pairs


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # 7, not 7.0: every float of these tables is read as a float either way
    if isinstance(value, int | float):
        return repr(value)
    return toml_string(str(value))
