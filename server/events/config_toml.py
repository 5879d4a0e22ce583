"""The ``[events]`` table written back as TOML, for `server.persist.write_config`: saving an API change
must keep the outputs the file configured. Reading it is `server.events.config`'s."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import MISSING, fields
from pathlib import Path

from server.events.config import DEFAULT_HISTORY_FILE, HISTORY_KEYS, MQTT_KEYS, WEBHOOK_KEYS, EventsSettings
from server.events.toml_text import toml_string


def events_toml(settings: EventsSettings, spelled: Collection[str] = frozenset()) -> list[str]:
    """``settings`` as TOML lines.

    A key is written where the file spelled it out (``spelled``, as `spelled_keys` names them), whatever
    its value: a user who copied README's example (``max_age_days = 30``, ``topic_prefix = "segcast"``)
    keeps it. Any other only where reading the table without it would give another value (a history's
    ``path`` as the file wrote it, see `server.persist`): a default written by segcast would stay in the
    file when a later release improves it. A table that is all defaults is written empty: it turns its
    output on.
    """
    lines: list[str] = []
    if settings.history is not None:
        implied_path = {"path": Path(DEFAULT_HISTORY_FILE)}
        lines += [
            "[events.history]",
            *_pairs(settings.history, HISTORY_KEYS, _kept(spelled, "history"), implied_path),
            "",
        ]
    for index, hook in enumerate(settings.webhooks):
        lines += ["[[events.webhooks]]", *_pairs(hook, WEBHOOK_KEYS, _kept(spelled, f"webhooks[{index}]")), ""]
    if settings.mqtt is not None:
        # Without tls, a table with a ca_file takes TLS on (`server.events.config`).
        implied_tls = {"tls": settings.mqtt.ca_file is not None}
        lines += ["[events.mqtt]", *_pairs(settings.mqtt, MQTT_KEYS, _kept(spelled, "mqtt"), implied_tls), ""]
    return lines


def spelled_keys(events: object) -> frozenset[str]:
    """The keys a config file's ``[events]`` table (as `tomllib` read it) spells out, as `events_toml` takes
    them: ``history.max_mb``, ``mqtt.topic_prefix``, ``webhooks[0].timeout_s``. None of a table that is not
    one (a file that would not load: the save is refused for it)."""
    if not isinstance(events, Mapping):
        return frozenset()
    tables = [(table, events.get(table)) for table in ("history", "mqtt")]
    hooks = events.get("webhooks")
    if isinstance(hooks, list):
        tables += [(f"webhooks[{index}]", hook) for index, hook in enumerate(hooks)]
    return frozenset(f"{table}.{key}" for table, keys in tables if isinstance(keys, Mapping) for key in keys)


def _kept(spelled: Collection[str], table: str) -> frozenset[str]:
    """The keys of ``table`` (``history``, ``webhooks[0]``...) that ``spelled`` names."""
    prefix = f"{table}."
    return frozenset(key.removeprefix(prefix) for key in spelled if key.startswith(prefix))


def _pairs(
    value: object, keys: tuple[str, ...], kept: Collection[str], implied: Mapping[str, object] | None = None
) -> list[str]:
    """``key = value`` lines of ``value``'s fields that are set and in ``kept`` or not their defaults
    (``implied`` where a field's default is not what a table without the key reads as)."""
    defaults = {f.name: f.default for f in fields(value) if f.default is not MISSING}  # type: ignore[arg-type]
    defaults.update(implied or {})
    pairs = []
    for key in keys:
        given = getattr(value, key)
        if given is not None and (key in kept or key not in defaults or given != defaults[key]):
            pairs.append(f"{key} = {_toml(given)}")
    return pairs


def _toml(value: object) -> str:
    if isinstance(value, tuple):  # a webhook's filters: names and event types
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # 7, not 7.0: every float of these tables is read as a float either way
    if isinstance(value, int | float):
        return repr(value)
    return toml_string(str(value))
