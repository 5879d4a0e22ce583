"""The ``[events]`` table: each output configured, bad keys named, kept when the API saves the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.config import ConfigError, StreamConfig, load_config, write_config
from server.events.config import EventsSettings, HistorySettings, MqttSettings, WebhookSettings

FULL = """
[events.history]
path = "data/events.db"
max_age_days = 7
max_mb = 50
snapshots = false

[[events.webhooks]]
url = "https://hooks.example/segcast?token=abc"
secret = "s3cret"
timeout_s = 2.5
retries = 5

[events.mqtt]
host = "broker.lan"
username = "segcast"
password = "pw"
tls = true
topic_prefix = "home/segcast"
"""


def test_every_output_is_read(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(FULL)
    events = load_config(path).events
    assert events == EventsSettings(
        history=HistorySettings(tmp_path / "data" / "events.db", 7.0, 50.0, snapshots=False),
        webhooks=(WebhookSettings("https://hooks.example/segcast?token=abc", "s3cret", 2.5, 5),),
        mqtt=MqttSettings("broker.lan", username="segcast", password="pw", tls=True, topic_prefix="home/segcast"),
    )
    assert events.mqtt is not None and events.mqtt.effective_port == 8883


def test_no_events_table_means_no_outputs(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text("[server]\nport = 8081\n")
    assert not load_config(path).events.any


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ("[events.history]\nmax_mb = -1", "events.history.max_mb"),
        ("[events.history]\nkeep = 1", "events.history.keep"),
        ('[[events.webhooks]]\nurl = "ftp://x"', "events.webhooks[0].url"),
        ('[[events.webhooks]]\nurl = "http://x"\nretries = 99', "events.webhooks[0].retries"),
        ('[[events.webhooks]]\nurl = "http://x:99999/hook"', "events.webhooks[0].url"),
        ('[[events.webhooks]]\nurl = "http://x:abc/hook"', "events.webhooks[0].url"),
        ('[[events.webhooks]]\nurl = "http://x:0/hook"', "events.webhooks[0].url"),
        ("[events.mqtt]\nport = 1883", "events.mqtt.host"),
        ('[events.mqtt]\nhost = "b"\nport = 0', "events.mqtt.port"),
        ('[events.mqtt]\nhost = "b"\npassword = "p"', "events.mqtt.password"),
        ('[events.mqtt]\nhost = "b"\ntopic_prefix = "a/#"', "events.mqtt.topic_prefix"),
        ('[events.mqtt]\nhost = "b"\nca_file = "missing.pem"', "events.mqtt.ca_file"),
        ("[events]\nkafka = 1", "events.kafka"),
    ],
)
def test_a_bad_key_is_named(tmp_path: Path, table: str, named: str) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(table)
    with pytest.raises(ConfigError, match=f"^segcast\\.toml: {re.escape(named)}:"):
        load_config(path)


def test_saving_an_api_change_keeps_the_events_table(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(FULL)
    settings = load_config(path)
    write_config(settings, [StreamConfig("cam", "scene:?seed=1")])
    assert load_config(path).events == settings.events
