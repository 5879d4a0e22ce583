"""The ``[events]`` table: each output configured, bad keys named, kept when the API saves the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.config import Settings, StreamConfig, load_config
from server.config_values import ConfigError
from server.events.config import EventsSettings, HistorySettings, MqttSettings, WebhookSettings
from server.persist import write_config

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
        # Refused at start, not found out as every event is retried and lost.
        ('[[events.webhooks]]\nurl = "http://exa mple.com/hook"', "events.webhooks[0].url"),
        ('[[events.webhooks]]\nurl = "http://-bad-/hook"', "events.webhooks[0].url"),
        # Longer than DNS holds: aiohttp raised a bare UnicodeError on every attempt.
        (f'[[events.webhooks]]\nurl = "http://{"a" * 64}.example/hook"', "events.webhooks[0].url"),
        (f'[events.mqtt]\nhost = "{"b." * 126}lan"', "events.mqtt.host"),
        ("[events.mqtt]\nport = 1883", "events.mqtt.host"),
        ('[events.mqtt]\nhost = "b"\nport = 0', "events.mqtt.port"),
        ('[events.mqtt]\nhost = "b"\npassword = "p"', "events.mqtt.password"),
        ('[events.mqtt]\nhost = "b"\ntopic_prefix = "a/#"', "events.mqtt.topic_prefix"),
        ('[events.mqtt]\nhost = "b"\nca_file = "missing.pem"', "events.mqtt.ca_file"),
        ('[events.mqtt]\nhost = "b"\ntls = false\nca_file = "segcast.toml"', "events.mqtt.ca_file"),
        ("[events.history]\nmax_mb = 0.001", "events.history.max_mb"),
        ("[events.history]\nmax_age_days = 1e6", "events.history.max_age_days"),
        ('[events.history]\npath = "."', "events.history.path"),
        ('[events.history]\npath = "data/"', "events.history.path"),
        ('[[events.webhooks]]\nurl = "http://x"\ntimeout_s = 999999999', "events.webhooks[0].timeout_s"),
        ("[events]\nkafka = 1", "events.kafka"),
    ],
)
def test_a_bad_key_is_named(tmp_path: Path, table: str, named: str) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(table)
    with pytest.raises(ConfigError, match=f"^segcast\\.toml: {re.escape(named)}:"):
        load_config(path)


def test_a_slip_of_an_events_table_names_the_table_meant(tmp_path: Path) -> None:
    """``[events.histroy]`` was told the tables [events] has, but not which of them it was close to."""
    path = tmp_path / "segcast.toml"
    path.write_text("[events.histroy]\nmax_mb = 10\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        "segcast.toml: events.histroy: unknown key; known keys are history, webhooks, mqtt; did you mean 'history'?"
    )


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("[events.history]\nmax_mb = true", "events.history.max_mb: expected a number from 1 to 1000000000, got true"),
        (
            "[events.history]\nqueue = false",
            "events.history.queue: expected a whole number from 1 to 100000, got false",
        ),
        (
            '[events.mqtt]\nhost = "b"\nport = true',
            "events.mqtt.port: expected a whole number from 1 to 65535, got true",
        ),
        (
            '[[events.webhooks]]\nurl = "http://x"\nretries = true',
            "events.webhooks[0].retries: expected a whole number from 0 to 20, got true",
        ),
    ],
)
def test_true_or_false_for_a_number_is_said_to_be_no_number(tmp_path: Path, table: str, expected: str) -> None:
    """Said plainly: "got True" was Python's spelling of a value Python takes for a number."""
    path = tmp_path / "segcast.toml"
    path.write_text(table)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == f"segcast.toml: {expected}, which is not a number"


@pytest.mark.parametrize(
    ("host", "instead"),
    [
        ("mqtt://192.168.1.5:1883", 'host = "192.168.1.5" and port = 1883'),
        ("homeassistant.local:1883", 'host = "homeassistant.local" and port = 1883'),
        ("mqtts://broker.lan", 'host = "broker.lan" and tls = true'),
        ("[::1]:1884", 'host = "::1" and port = 1884'),
    ],
)
def test_a_broker_written_as_a_url_is_refused_saying_what_to_write(tmp_path: Path, host: str, instead: str) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(f'[events.mqtt]\nhost = "{host}"\n')
    with pytest.raises(ConfigError, match=f"^segcast\\.toml: events\\.mqtt\\.host: .*write {re.escape(instead)}$"):
        load_config(path)


@pytest.mark.parametrize("host", ["broker.lan", "192.168.1.5", "::1", "fe80::1%eth0", "mqtt_broker"])
def test_a_broker_host_name_or_address_is_taken(tmp_path: Path, host: str) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(f'[events.mqtt]\nhost = "{host}"\n')
    mqtt = load_config(path).events.mqtt
    assert mqtt is not None and mqtt.host == host


@pytest.mark.parametrize("host", [f"{'a' * 64}.example", "a." * 126 + "lan"], ids=["64-part", "255-name"])
def test_a_host_name_longer_than_dns_holds_is_refused_saying_so(tmp_path: Path, host: str) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(f'[[events.webhooks]]\nurl = "https://{host}/hook"\n')
    with pytest.raises(ConfigError, match="at most 253 characters, each part between dots at most 63"):
        load_config(path)


def test_a_broker_host_name_longer_than_dns_holds_is_refused_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(f'[events.mqtt]\nhost = "{"b" * 64}.lan"\n')
    with pytest.raises(ConfigError, match="each part between dots at most 63"):
        load_config(path)


def test_a_host_name_as_long_as_dns_holds_is_taken(tmp_path: Path) -> None:
    host = f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}"  # 253 characters
    path = tmp_path / "segcast.toml"
    path.write_text(f'[[events.webhooks]]\nurl = "https://{host}/hook"\n[events.mqtt]\nhost = "{host}."\n')
    events = load_config(path).events
    assert events.webhooks[0].url == f"https://{host}/hook"
    assert events.mqtt is not None and events.mqtt.host == f"{host}."


def test_a_password_in_a_broker_url_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text('[events.mqtt]\nhost = "mqtt://segcast:hunter2@broker.lan"\n')
    with pytest.raises(ConfigError, match=r"events\.mqtt\.host") as refused:
        load_config(path)
    assert "hunter2" not in str(refused.value)


def test_saving_an_api_change_keeps_the_events_table(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(FULL)
    settings = load_config(path)
    write_config(settings, [StreamConfig("cam", "scene:?seed=1")])
    assert load_config(path).events == settings.events


def test_saving_keeps_characters_json_would_escape_beyond_toml(tmp_path: Path) -> None:
    """An emoji becomes a surrogate pair in JSON's ASCII escapes, which TOML refuses: the saved file would not load."""
    secret = 'correct horse \U0001f434 battery, "quoted", back\\slash, tab\tnew\nline, bell\x07 and del\x7f'
    events = EventsSettings(
        history=HistorySettings(tmp_path / "h\U0001f434.db"),
        webhooks=(WebhookSettings("https://hooks.example/x", secret),),
        mqtt=MqttSettings("broker.lan", username="s", password="\U0001f511"),
    )
    path = tmp_path / "segcast.toml"
    write_config(Settings(config_path=path, events=events), [])
    assert load_config(path).events == events
    assert "\U0001f434" in path.read_text(encoding="utf-8"), "written as it is, not escaped"


def test_a_history_path_under_a_file_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    """Before, it started and every write failed with "[Errno 17] File exists"."""
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    config = tmp_path / "segcast.toml"
    config.write_text('[events.history]\npath = "notes.txt/events/events.db"\n')
    blocker = re.escape(str(tmp_path / "notes.txt"))
    with pytest.raises(
        ConfigError, match=rf"events\.history\.path: .* cannot be made: {blocker} is a file, not a folder"
    ):
        load_config(config)
